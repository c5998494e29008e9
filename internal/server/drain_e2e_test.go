package server

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// On shutdown every WebSocket client is told to reconnect elsewhere:
// close 1012 (service restart) with a jittered "reconnect in …" hint.
func TestDrainClosesWith1012(t *testing.T) {
	n := startNode(t)
	c := n.connect("alice")
	c.call(map[string]any{"op": "ping"})
	go n.stop()
	_ = c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _, err := c.c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseServiceRestart || !strings.HasPrefix(ce.Text, "service restart; reconnect in ") {
		t.Fatalf("got %v, want close 1012 with a reconnect hint", err)
	}
}
