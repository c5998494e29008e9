package server

import (
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tidings/tidings/internal/auth"
	"github.com/tidings/tidings/internal/config"
)

// A token's exp ends the connection it opened: the sweep after it closes
// a WebSocket with 1008 "token expired" and ends an SSE stream. A client
// that sends `auth` with a fresh token for the same user before then
// keeps its connection.
func TestExpiredTokenClosesTheConnection(t *testing.T) {
	n := startNode(t, func(c *config.Config) {
		c.PingInterval = 100 * time.Millisecond // the sweep runs every 100 ms
		c.IdleTimeout = time.Minute
	})
	short := func(user string) string {
		tok, err := auth.MintHS256([]byte(testSecret), user, 2*time.Second, nil)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	opened := time.Now()
	dial := func(user string) *wsClient {
		c, resp, err := n.dial("token="+url.QueryEscape(short(user)), nil)
		if err != nil {
			t.Fatalf("dial: %v (%v)", err, resp)
		}
		return c
	}
	expiring, renewing := dial("alice"), dial("bob")
	if r := renewing.call(map[string]any{"op": "auth", "token": n.token("bob"), "ref": 1}); r["result"] != true {
		t.Fatalf("renewal: %v", r)
	}
	stream := n.openSSE("token="+url.QueryEscape(short("carol")), nil)
	stream.start()

	_ = expiring.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _, err := expiring.c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.ClosePolicyViolation || ce.Text != "token expired" {
		t.Fatalf("got %v, want close 1008 token expired", err)
	}
	if d := time.Since(opened); d < time.Second {
		t.Fatalf("closed after %v, before the token's exp", d)
	}
	select {
	case <-stream.done:
	case <-time.After(10 * time.Second):
		t.Fatal("SSE stream with an expired token not ended")
	}
	// Past the first token's end, the renewed connection still answers.
	if r := renewing.call(map[string]any{"op": "ping"}); r["op"] != "pong" {
		t.Fatalf("renewed connection: %v", r)
	}
}
