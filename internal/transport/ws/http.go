package ws

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/tidings/tidings"
)

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// writeHTTPError answers a refused upgrade with the usual JSON error.
func writeHTTPError(w http.ResponseWriter, err error) {
	e := tidings.ErrorOf(err)
	w.Header().Set("Content-Type", "application/json")
	if e.Code == tidings.CodeNotAuthenticated {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tidings"`)
	}
	w.WriteHeader(e.Code.HTTPStatus())
	_ = json.NewEncoder(w).Encode(e)
}

// isUpgrade reports whether r asks for a WebSocket.
func isUpgrade(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket") &&
		strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade")
}
