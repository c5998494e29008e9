package sse

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tidings/tidings/internal/transport/netpoll"
)

// A drain's Close writes its retry: line only behind the response head,
// even when it comes while the worker is writing the head.
func TestDrainRetryComesAfterTheHead(t *testing.T) {
	srv := &Server{opt: Options{Retry: 3 * time.Second}}
	head := srv.makeHead("")
	hint := func() time.Duration { return time.Second }
	srv.hint.Store(&hint)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	bad := 0
	for try := 0; try < 2000 && bad == 0; try++ {
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		nc, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		ss := &session{s: srv, head: head}
		if err := netpoll.Take(&ss.sock, nc); err != nil {
			t.Fatal(err)
		}
		ss.taken.Store(true)
		done := make(chan struct{})
		go func() { // the hub worker, writing the head
			_ = ss.Write([][]byte{head})
			close(done)
		}()
		for !ss.started.Load() { // Drain's Close, right when started is set
		}
		ss.Close(1012, "service restart")
		<-done
		_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, _ := io.ReadAll(client)
		client.Close()
		if len(got) > 0 && !strings.HasPrefix(string(got), "HTTP/1.1 200") {
			bad++
			t.Errorf("try %d: the stream starts with %q", try, got[:min(len(got), 20)])
		}
	}
}
