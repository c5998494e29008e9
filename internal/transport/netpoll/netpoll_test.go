package netpoll

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// These tests run on both engines: `go test` (epoll on Linux) and
// `go test -tags netpoll_portable`.

// recorder is a session that keeps what it read and counts its closes.
type recorder struct {
	mu     sync.Mutex
	got    []byte
	closed atomic.Int32
	done   chan struct{}
	onData func([]byte)
}

func newRecorder() *recorder { return &recorder{done: make(chan struct{})} }

func (r *recorder) Parse(b []byte) {
	r.mu.Lock()
	r.got = append(r.got, b...)
	r.mu.Unlock()
	if r.onData != nil {
		r.onData(b)
	}
}

func (r *recorder) Closed() {
	if r.closed.Add(1) == 1 {
		close(r.done)
	}
}

func (r *recorder) waitClosed(t *testing.T) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		t.Fatal("Closed was not called")
	}
}

func startEngine(t *testing.T, cfg Config) *Engine {
	t.Helper()
	e := NewEngine(cfg)
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	return e
}

// pair returns a client socket and the server side taken by the engine's
// package (not yet added).
func pair(t *testing.T) (client net.Conn, server *Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	nc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	server = new(Conn)
	if err := Take(server, nc); err != nil {
		t.Fatal(err)
	}
	return client, server
}

// added is a connection on a started engine: the client's end, the
// server's, and the session that records what the poller reported.
func added(t *testing.T, cfg Config) (net.Conn, *Conn, *recorder) {
	t.Helper()
	e := startEngine(t, cfg)
	client, c := pair(t)
	r := newRecorder()
	if err := e.Add(c, r); err != nil {
		t.Fatal(err)
	}
	return client, c, r
}

func readN(t *testing.T, c net.Conn, n int) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return b
}

func TestReadWriteAndPeerClose(t *testing.T) {
	e := startEngine(t, Config{Pollers: 2})
	client, c := pair(t)
	r := newRecorder()
	r.onData = func(b []byte) { _, _ = c.Write(bytes.ToUpper(b)) }
	if err := e.Add(c, r); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, client, 5); string(got) != "HELLO" {
		t.Fatalf("echo: %q", got)
	}
	n, err := c.Writev([][]byte{[]byte("a"), nil, []byte("bc")})
	if err != nil || n != 3 {
		t.Fatalf("Writev: %d, %v", n, err)
	}
	if got := readN(t, client, 3); string(got) != "abc" {
		t.Fatalf("Writev: %q", got)
	}
	client.Close()
	r.waitClosed(t)
	if _, err := c.Write([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
	time.Sleep(50 * time.Millisecond)
	if n := r.closed.Load(); n != 1 {
		t.Fatalf("Closed called %d times", n)
	}
}

// What is written before the connection is on a poller goes out, and a
// close then ends it without a Closed call; Add refuses it.
func TestBeforeAdd(t *testing.T) {
	e := startEngine(t, Config{})
	client, c := pair(t)
	if _, err := c.Write([]byte("early")); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, client, 5); string(got) != "early" {
		t.Fatalf("%q", got)
	}
	_ = c.Close()
	r := newRecorder()
	if err := e.Add(c, r); !errors.Is(err, ErrClosed) {
		t.Fatalf("Add of a closed connection: %v", err)
	}
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("client read after close: %v", err)
	}
	if r.closed.Load() != 0 {
		t.Fatal("Closed called for a connection that was never added")
	}
}

// Close on a poller: the bytes written before it arrive, then EOF, and
// the session hears of it once.
func TestCloseAfterWrite(t *testing.T) {
	client, c, r := added(t, Config{})
	if _, err := c.Write([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	_ = c.Close()
	got, err := io.ReadAll(io.LimitReader(deadlined(client), 100))
	if err != nil || string(got) != "bye" {
		t.Fatalf("client got %q, %v", got, err)
	}
	r.waitClosed(t)
}

func deadlined(c net.Conn) net.Conn {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	return c
}

// A peer that does not read: writes are kept up to the limit, then the
// connection is closed with ErrOverflow; what was kept before arrives in
// order when the peer reads in time.
func TestSlowPeer(t *testing.T) {
	_, c, r := added(t, Config{MaxWriteBuffer: 1 << 20}) // the client never reads
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	var err error
	for i := 0; i < 1000 && err == nil; i++ {
		_, err = c.Write(chunk)
	}
	if !errors.Is(err, ErrOverflow) {
		t.Fatalf("a peer that never reads: %v", err)
	}
	r.waitClosed(t)
}

func TestKeptBytesArriveInOrder(t *testing.T) {
	client, c, _ := added(t, Config{MaxWriteBuffer: 64 << 20})
	// Far more than the socket buffers hold, from two kinds of write.
	var want bytes.Buffer
	for i := range 200000 {
		line := fmt.Appendf(nil, "line %08d ........................................\n", i)
		want.Write(line)
		var n int
		var err error
		if i%3 == 0 {
			n, err = c.Writev([][]byte{line[:10], line[10:]})
		} else {
			n, err = c.Write(line)
		}
		if err != nil || n != len(line) {
			t.Fatalf("write %d: %d bytes of %d, %v", i, n, len(line), err)
		}
	}
	got := readN(t, client, want.Len())
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatal("bytes reordered or lost")
	}
}

// Stop closes every connection, reports each once, and refuses Add.
func TestStop(t *testing.T) {
	e := NewEngine(Config{Pollers: 2})
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	var recs []*recorder
	var clients []net.Conn
	for range 10 {
		client, c := pair(t)
		r := newRecorder()
		if err := e.Add(c, r); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
		clients = append(clients, client)
	}
	e.Stop()
	for _, r := range recs {
		r.waitClosed(t)
	}
	for _, cl := range clients {
		if _, err := deadlined(cl).Read(make([]byte, 1)); err == nil {
			t.Fatal("a client read after Stop")
		}
	}
	_, c := pair(t)
	if err := e.Add(c, newRecorder()); !errors.Is(err, ErrStopped) {
		t.Fatalf("Add after Stop: %v", err)
	}
	_ = c.Close()
	e.Stop() // twice is fine
}

// Connections closed while others write to them, over and over, so that
// descriptor numbers are reused at once: every client gets only its own
// bytes.
func TestNoBytesToAReusedDescriptor(t *testing.T) {
	e := startEngine(t, Config{Pollers: 2})
	for round := range 20 {
		var wg sync.WaitGroup
		type side struct {
			client net.Conn
			c      *Conn
			tag    []byte
		}
		var sides []side
		for i := range 20 {
			client, c := pair(t)
			if err := e.Add(c, newRecorder()); err != nil {
				t.Fatal(err)
			}
			sides = append(sides, side{client, c, fmt.Appendf(nil, "<%02d-%02d>", round, i)})
		}
		for _, s := range sides {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 200 {
					if _, err := s.c.Write(s.tag); err != nil {
						return
					}
				}
			}()
		}
		for i, s := range sides {
			if i%2 == 0 {
				_ = s.c.Close()
			}
		}
		wg.Wait()
		for _, s := range sides {
			_ = s.c.Close()
			got, _ := io.ReadAll(deadlined(s.client))
			if len(bytes.ReplaceAll(got, s.tag, nil)) != 0 {
				t.Fatalf("client %s got bytes of another: %q", s.tag, got)
			}
		}
	}
}
