package server

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tidings/tidings/internal/config"
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

// A notification stored right before the stop, which coalescing
// (min_write_interval) would keep for a later write, is written before
// the drain's close, not left to the client's resume.
func TestDrainWritesWhatCoalescingKeeps(t *testing.T) {
	n := startNode(t, func(c *config.Config) { c.MinWriteInterval = time.Second })
	c := n.connect("alice")
	c.call(map[string]any{"op": "ping"})
	n.notify([]string{"alice"}, nil)
	c.readJSON() // the first after the reply goes out at the next tick, an interval after the reply
	// Stored, maybe not yet handed to the hub: the drain publishes it
	// before it closes the connections.
	kept := n.notify([]string{"alice"}, nil)
	go n.stop()
	if data, _ := c.readJSON()["data"].(map[string]any); data["id"] != kept[0] {
		t.Fatalf("before the close: %v, want notification %s", data, kept[0])
	}
	_, _, err := c.c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseServiceRestart {
		t.Fatalf("got %v, want close 1012", err)
	}
}

// A token at upgrade over max_conns_per_user: the upgrade completes, the
// client gets the error frame (code 6), then close 1008 with its reason.
func TestUpgradeOverConnectionLimit(t *testing.T) {
	n := startNode(t, func(c *config.Config) { c.MaxConnsPerUser = 1 })
	first := n.connect("alice")
	first.call(map[string]any{"op": "ping"})
	second := n.connect("alice")
	if got := second.readJSON(); got["code"] != 6.0 || got["msg"] != "too many connections for this user" {
		t.Fatalf("error frame: %v", got)
	}
	_ = second.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _, err := second.c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.ClosePolicyViolation || ce.Text != "too many connections for this user" {
		t.Fatalf("got %v, want close 1008 with the reason", err)
	}
	if got := first.call(map[string]any{"op": "ping"}); got["op"] != "pong" {
		t.Fatalf("the first connection: %v", got)
	}
}
