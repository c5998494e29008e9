package ws

import (
	"encoding/json"
	"net/http"
	"strings"
)

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// isUpgrade reports whether r asks for a WebSocket.
func isUpgrade(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket") &&
		strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade")
}
