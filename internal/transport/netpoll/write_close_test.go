package netpoll

import (
	"bytes"
	"testing"
	"time"
)

// Close of a connection whose peer stopped reading ends it within the
// linger time, even while bytes wait for the peer (on the portable engine
// a writer is blocked in net.Conn.Write then).
func TestCloseEndsAStuckPeer(t *testing.T) {
	_, c, r := added(t, Config{MaxWriteBuffer: 64 << 20}) // the client never reads
	chunk := bytes.Repeat([]byte("z"), 64<<10)
	for range 64 { // 4 MiB: far more than the socket buffers hold
		if _, err := c.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	_ = c.Close()
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end a connection whose peer does not read: Closed not called after 10 s")
	}
}

// One Writev is one unit for other writers. Callers rely on it: a
// multi-channel SSE event is two buffers (its id line, then the event),
// and a drain's retry: line or a WebSocket pong is written from another
// goroutine.
func TestWritevIsNotSplitByOtherWrites(t *testing.T) {
	client, c, _ := added(t, Config{MaxWriteBuffer: 64 << 20})
	const rounds = 20000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range rounds {
			_, _ = c.Write([]byte("B"))
		}
	}()
	for range rounds {
		_, _ = c.Writev([][]byte{[]byte("("), []byte(")")})
	}
	<-done
	got := readN(t, client, 3*rounds)
	if i := bytes.Index(got, []byte("(B")); i >= 0 {
		t.Fatalf("a write landed inside a Writev: %q at %d", got[i:i+3], i)
	}
}
