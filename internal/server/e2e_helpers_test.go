package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tidings/tidings/internal/auth"
	"github.com/tidings/tidings/internal/config"
)

const (
	testSecret = "e2e-secret"
	testAPIKey = "pub-key-1"
	testAdmin  = "admin-key-1"
)

// node is a running server on a loopback port.
type node struct {
	t    testing.TB
	cfg  *config.Config
	srv  *Server
	base string // http://127.0.0.1:port
	stop func()
}

func startNode(t testing.TB, mutate ...func(*config.Config)) *node {
	t.Helper()
	cfg := config.Defaults()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.JWTSecret = testSecret
	cfg.APIKeys = []string{testAPIKey}
	cfg.AdminKey = testAdmin
	for _, m := range mutate {
		m(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(newTestWriter(t), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := New(ctx, &cfg, log)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	n := &node{t: t, cfg: &cfg, srv: srv, base: "http://" + srv.Addr().String() + cfg.PathPrefix}
	var once sync.Once
	n.stop = func() { // a test may stop the node while its cleanup does too
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Error("server did not stop")
			}
		})
	}
	t.Cleanup(n.stop)
	return n
}

// testWriter logs to the test while it runs. A line may come after the
// test ended (a goroutine of the stopped node still finishing); it is
// dropped instead of failing the run.
type testWriter struct {
	t    testing.TB
	done *atomic.Bool
}

func newTestWriter(t testing.TB) testWriter {
	w := testWriter{t: t, done: new(atomic.Bool)}
	t.Cleanup(func() { w.done.Store(true) })
	return w
}

func (w testWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

func (n *node) token(user string) string {
	n.t.Helper()
	tok, err := auth.MintHS256([]byte(testSecret), user, time.Hour, nil)
	if err != nil {
		n.t.Fatal(err)
	}
	return tok
}

// do sends an HTTP request with a bearer credential and returns status
// and body.
func (n *node) do(method, path, bearer string, body any) (int, []byte) {
	n.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, n.base+path, rd)
	if err != nil {
		n.t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func (n *node) notify(users []string, extra map[string]any) []string {
	n.t.Helper()
	body := map[string]any{"users": users, "type": "comment.reply", "title": "Alice replied", "body": "hi"}
	for k, v := range extra {
		body[k] = v
	}
	st, out := n.do("POST", "/v1/notifications", testAPIKey, body)
	if st != http.StatusAccepted {
		n.t.Fatalf("notify: %d %s", st, out)
	}
	var r struct{ IDs []string }
	if err := json.Unmarshal(out, &r); err != nil {
		n.t.Fatal(err)
	}
	return r.IDs
}

// wsClient is a test WebSocket client.
type wsClient struct {
	t testing.TB
	c *websocket.Conn
}

func (n *node) dial(query string, hdr http.Header) (*wsClient, *http.Response, error) {
	u := "ws" + strings.TrimPrefix(n.base, "http") + n.cfg.WSPath
	if query != "" {
		u += "?" + query
	}
	c, resp, err := websocket.DefaultDialer.Dial(u, hdr)
	if err != nil {
		return nil, resp, err
	}
	wc := &wsClient{t: n.t, c: c}
	n.t.Cleanup(func() { _ = c.Close() })
	return wc, resp, nil
}

// connect dials with a user's token at upgrade.
func (n *node) connect(user string) *wsClient {
	n.t.Helper()
	c, resp, err := n.dial("token="+url.QueryEscape(n.token(user)), nil)
	if err != nil {
		n.t.Fatalf("dial: %v (%v)", err, resp)
	}
	return c
}

func (c *wsClient) sendText(s string) {
	c.t.Helper()
	if err := c.c.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *wsClient) send(v any) {
	c.t.Helper()
	b, _ := json.Marshal(v)
	c.sendText(string(b))
}

// read returns the next text frame, failing after a few seconds.
func (c *wsClient) read() string {
	c.t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, b, err := c.c.ReadMessage()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return string(b)
}

func (c *wsClient) readJSON() map[string]any {
	c.t.Helper()
	s := c.read()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		c.t.Fatalf("frame %q is not JSON: %v", s, err)
	}
	return m
}

// call sends a frame and returns the reply.
func (c *wsClient) call(v any) map[string]any {
	c.t.Helper()
	c.send(v)
	return c.readJSON()
}

// expectSilence asserts that nothing arrives for d.
func (c *wsClient) expectSilence(d time.Duration) {
	c.t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(d))
	_, b, err := c.c.ReadMessage()
	if err == nil {
		c.t.Fatalf("unexpected frame %q", b)
	}
}
