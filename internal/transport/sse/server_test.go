package sse

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/internal/hub"
)

type stubAuth struct{}

func (stubAuth) Authenticate(_ context.Context, token string) (tidings.Identity, error) {
	if token == "" || token == "bad" {
		return tidings.Identity{}, tidings.Errorf(tidings.CodeNotAuthenticated, "bad token")
	}
	return tidings.Identity{User: token}, nil
}

type allowAll struct{}

func (allowAll) Allow(context.Context, tidings.Identity, string) error { return nil }

type noReplay struct{}

func (noReplay) Replay(context.Context, string, int64) ([]*tidings.Message, error) { return nil, nil }

func (noReplay) Cursor(context.Context, string) (int64, error) { return 0, nil }

func startServer(t *testing.T, opt Options) (*Server, *hub.Hub, string) {
	t.Helper()
	h := hub.New(hub.Options{Workers: 2})
	h.Start()
	opt.Hub, opt.Auth, opt.Rules, opt.Inbox = h, stubAuth{}, allowAll{}, noReplay{}
	opt.Token = func(r *http.Request) string { return r.URL.Query().Get("token") }
	s := New(opt)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(func() {
		ts.Close()
		s.Stop()
		h.Stop()
	})
	return s, h, strings.TrimPrefix(ts.URL, "http://")
}

// dialStream opens a stream on a raw connection and reads up to ": ok".
func dialStream(t *testing.T, addr, query string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	fmt.Fprintf(c, "GET /?%s HTTP/1.1\r\nHost: x\r\n\r\n", query)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	var sb strings.Builder
	for !strings.HasSuffix(sb.String(), ": ok\n\n") {
		b, err := br.ReadByte()
		if err != nil {
			t.Fatalf("head: %q %v", sb.String(), err)
		}
		sb.WriteByte(b)
	}
	return c, br
}

func waitCount(t *testing.T, s *Server, want int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.Count() != want {
		if time.Now().After(deadline) {
			t.Fatalf("count %d, want %d", s.Count(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A client that stops reading is closed once more than MaxWriteBytes wait
// for it; a reading client on the same channel keeps receiving.
func TestSlowConsumerClosed(t *testing.T) {
	s, h, addr := startServer(t, Options{MaxWriteBytes: 64 << 10})
	slow, _ := dialStream(t, addr, "token=slow&channel=t")
	if tc, ok := slow.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4 << 10)
	}
	fast, fastR := dialStream(t, addr, "token=fast&channel=t")
	_ = fast.SetReadDeadline(time.Now().Add(30 * time.Second))
	done := make(chan error, 1)
	go func() { // the fast client drains everything
		buf := make([]byte, 64<<10)
		for {
			if _, err := fastR.Read(buf); err != nil {
				done <- err
				return
			}
		}
	}()
	payload, _ := json.Marshal(strings.Repeat("x", 8<<10))
	deadline := time.Now().Add(20 * time.Second)
	for s.Count() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("slow consumer not closed; count %d", s.Count())
		}
		// 3.2 MB/s: the portable engine (no kernel buffer in front of its
		// queue) closes a reader whose writer stalls 20 ms; under -race on
		// a loaded machine, twice that rate cut the fast client off.
		h.Publish(&tidings.Message{Channel: "t", Event: "big", Data: payload})
		h.Publish(&tidings.Message{Channel: "t", Event: "big", Data: payload})
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("fast client cut off: %v", err)
	default:
	}
}

// Streams that go away at any point of their setup leave nothing behind.
func TestClientsLeavingDuringSetup(t *testing.T) {
	s, h, addr := startServer(t, Options{})
	for i := range 50 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET /?token=u%d&channel=a&channel=b HTTP/1.1\r\nHost: x\r\n\r\n", i)
		if i%2 == 0 {
			time.Sleep(time.Duration(i) * 20 * time.Microsecond)
		}
		_ = c.Close()
	}
	waitCount(t, s, 0)
	deadline := time.Now().Add(10 * time.Second)
	for h.Stats().Connections != 0 || h.Stats().Channels != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("hub still has %+v", h.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Drain closes every stream after a retry hint and refuses new ones.
func TestDrain(t *testing.T) {
	s, _, addr := startServer(t, Options{})
	c, br := dialStream(t, addr, "token=alice")
	s.Drain(time.Second, func(d time.Duration) time.Duration { return d / 2 })
	rest, err := readAll(br)
	if err != nil || rest != "retry: 500\n\n" {
		t.Fatalf("after drain: %q %v", rest, err)
	}
	_ = c.Close()
	waitCount(t, s, 0)
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	fmt.Fprintf(c2, "GET /?token=alice HTTP/1.1\r\nHost: x\r\n\r\n")
	_ = c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, _ := bufio.NewReader(c2).ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.1 503") {
		t.Fatalf("new stream while draining: %q", line)
	}
}

func readAll(br *bufio.Reader) (string, error) {
	var sb strings.Builder
	for {
		b, err := br.ReadByte()
		if err != nil {
			if sb.Len() > 0 || err.Error() == "EOF" {
				return sb.String(), nil
			}
			return sb.String(), err
		}
		sb.WriteByte(b)
	}
}

// A server stopped right after it started stops (the poller library loses
// a stop that comes before its poller goroutines run; Start waits for them).
func TestStopRightAfterStart(t *testing.T) {
	for range 200 {
		s := New(Options{Hub: hub.New(hub.Options{Workers: 1})})
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { s.Stop(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Stop did not return")
		}
	}
}
