package ws

import (
	"encoding/json"
	"net/http"

	"github.com/tidings/tidings"
)

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// writeHTTPError answers a refused upgrade with the usual JSON error.
func writeHTTPError(w http.ResponseWriter, err error) {
	e := tidings.ErrorOf(err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Code.HTTPStatus())
	_ = json.NewEncoder(w).Encode(e)
}
