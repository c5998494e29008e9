package server

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// fastFixture is a fastListener with one route, /stream, in front of an
// http.Server whose handler answers everything else; both say who
// answered.
type fastFixture struct {
	ln   *fastListener
	srv  *http.Server
	addr string
}

func newFastFixture(t *testing.T) *fastFixture {
	t.Helper()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	route := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("panic") != "" {
			panic("handler failed")
		}
		if r.URL.Query().Get("deny") != "" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"code":4001,"msg":"denied"}`)
			return
		}
		c, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nX-By: fast "+r.URL.RawQuery+" "+r.Header.Get("X-Test")+"\r\n\r\n")
		// Echo one line, as a stream would carry frames.
		line, _ := bufio.NewReader(c).ReadString('\n')
		_, _ = io.WriteString(c, "echo "+line)
		_ = c.Close()
	})
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-By", "net/http "+r.Method+" "+r.URL.Path+" ["+string(body)+"]")
	})
	fl := newFastListener(tcp, map[string]http.Handler{"/stream": route}, 500*time.Millisecond, slog.New(slog.DiscardHandler))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 500 * time.Millisecond}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(fl) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return &fastFixture{ln: fl, srv: srv, addr: tcp.Addr().String()}
}

// send writes the parts (pausing between them) on a new connection and
// returns the connection and a reader of the answers.
func (f *fastFixture) send(t *testing.T, parts ...string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	for i, p := range parts {
		if i > 0 {
			time.Sleep(30 * time.Millisecond)
		}
		if _, err := io.WriteString(c, p); err != nil {
			t.Fatal(err)
		}
	}
	return c, bufio.NewReader(c)
}

// answer reads one response and returns its status and X-By header.
func answer(t *testing.T, br *bufio.Reader) (int, string, *http.Response) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("X-By"), resp
}

const streamHead = "GET /stream?a=1 HTTP/1.1\r\nHost: x\r\nX-Test: yes\r\n\r\n"

func TestFastPathTakesARouteGET(t *testing.T) {
	f := newFastFixture(t)
	for _, parts := range [][]string{
		{streamHead},
		{"GE", "T /str", "eam?a=1 HTTP/1.1\r\nHost: x\r\n", "X-Test: yes\r\n\r\n"}, // a head in pieces
	} {
		before := f.ln.served.Load()
		c, br := f.send(t, parts...)
		status, by, _ := answer(t, br)
		if status != http.StatusSwitchingProtocols || by != "fast a=1 yes" {
			t.Fatalf("%q: got %d %q, want 101 from the fast path", parts, status, by)
		}
		if _, err := io.WriteString(c, "hello\n"); err != nil {
			t.Fatal(err)
		}
		if line, _ := br.ReadString('\n'); line != "echo hello\n" {
			t.Fatalf("after the upgrade: %q", line)
		}
		if got := f.ln.served.Load() - before; got != 1 {
			t.Fatalf("fast path served %d requests, want 1", got)
		}
	}
}

func TestFastPathLeavesTheRestToNetHTTP(t *testing.T) {
	f := newFastFixture(t)
	long := "GET /stream HTTP/1.1\r\nHost: x\r\nCookie: " + strings.Repeat("c", fastHeadBytes) + "\r\n\r\n"
	cases := []struct {
		name, req, by string
	}{
		{"other path", "GET /streamer HTTP/1.1\r\nHost: x\r\n\r\n", "net/http GET /streamer []"},
		{"other method", "POST /stream HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi", "net/http POST /stream [hi]"},
		{"a body", "GET /stream HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi", "net/http GET /stream [hi]"},
		{"HTTP/1.0", "GET /stream HTTP/1.0\r\nHost: x\r\n\r\n", "net/http GET /stream []"},
		{"escaped path", "GET /str%65am HTTP/1.1\r\nHost: x\r\n\r\n", "net/http GET /stream []"},
		{"pipelined", "GET /stream HTTP/1.1\r\nHost: x\r\n\r\nGET /x HTTP/1.1\r\nHost: x\r\n\r\n", "net/http GET /stream []"},
		{"longer head", long, "net/http GET /stream []"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := f.ln.served.Load()
			_, br := f.send(t, tc.req)
			status, by, _ := answer(t, br)
			if status != http.StatusOK || by != tc.by {
				t.Fatalf("got %d %q, want 200 %q", status, by, tc.by)
			}
			if f.ln.served.Load() != before {
				t.Fatal("the fast path took it")
			}
		})
	}
	// A route's GET later on a kept-alive connection: net/http's.
	c, br := f.send(t, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, by, _ := answer(t, br); by != "net/http GET /a []" {
		t.Fatalf("first request: %q", by)
	}
	if _, err := io.WriteString(c, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if _, by, _ := answer(t, br); by != "net/http GET /stream []" {
		t.Fatalf("second request: %q", by)
	}
}

func TestFastPathAnswersWithoutHijack(t *testing.T) {
	f := newFastFixture(t)
	_, br := f.send(t, "GET /stream?deny=1 HTTP/1.1\r\nHost: x\r\n\r\n")
	status, _, resp := answer(t, br)
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if status != http.StatusUnauthorized || string(body) != `{"code":4001,"msg":"denied"}` ||
		resp.Header.Get("Content-Type") != "application/json" || !resp.Close {
		t.Fatalf("got %d %q %v, close %v", status, body, resp.Header, resp.Close)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("connection left open after the answer: %v", err)
	}
}

func TestFastPathHandlerPanic(t *testing.T) {
	f := newFastFixture(t)
	_, br := f.send(t, "GET /stream?panic=1 HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("an answer from a handler that panicked")
	}
	_, br = f.send(t, streamHead)
	if status, _, _ := answer(t, br); status != http.StatusSwitchingProtocols {
		t.Fatalf("after a panic: %d", status)
	}
}

func TestFastPathSilentAndClosedConnections(t *testing.T) {
	f := newFastFixture(t)
	// Closed before a byte: nothing reaches net/http, nothing hangs.
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	// A partial route head, then silence: after the head timeout the
	// connection goes to net/http, whose own timeout ends it.
	c, br := f.send(t, "GET /stream HTTP/1.1\r\nHost: x\r\n")
	start := time.Now()
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("an answer to half a request")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("closed after %v", d)
	}
	c.Close()
	// The listener still serves.
	_, br = f.send(t, streamHead)
	if status, _, _ := answer(t, br); status != http.StatusSwitchingProtocols {
		t.Fatalf("got %d", status)
	}
}

func TestFastListenerClose(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := newFastListener(tcp, nil, time.Second, slog.New(slog.DiscardHandler))
	go func() { _, _ = fl.Accept() }() // starts accepting
	if err := fl.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := fl.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
	if _, err := net.Dial("tcp", tcp.Addr().String()); err == nil {
		t.Fatal("still accepting")
	}
}

// The node's WebSocket upgrades and SSE streams, and their refusals, are
// served by the fast path; a notification reaches both.
func TestNodeServesUpgradesOnTheFastPath(t *testing.T) {
	n := startNode(t)
	served := n.srv.fast.served.Load
	before := served()
	ws := n.connect("alice")
	if got := served() - before; got != 1 {
		t.Fatalf("WebSocket upgrade: fast path served %d, want 1", got)
	}
	if _, resp, err := n.dial("token=bad", nil); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("bad token: %v, %v", err, resp)
	}
	stream := n.openUser("alice", "", nil)
	defer stream.close()
	if status, body := n.refusedSSE("", nil); status != http.StatusUnauthorized || body["msg"] == nil {
		t.Fatalf("SSE without a token: %d %v", status, body)
	}
	if got := served() - before; got != 4 {
		t.Fatalf("fast path served %d requests, want 4", got)
	}
	ids := n.notify([]string{"alice"}, nil)
	if m := ws.readJSON(); m["event"] != "notification" {
		t.Fatalf("WebSocket got %v", m)
	}
	if ev := stream.event(); !strings.Contains(ev.Data, ids[0]) {
		t.Fatalf("SSE got %+v, want notification %s", ev, ids[0])
	}
}
