//go:build linux && !netpoll_portable

package netpoll

import (
	"bytes"
	"errors"
	"io"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// An Add whose EPOLL_CTL_ADD fails while the poller's stop has already
// listed the connection (Add publishes it before the epoll_ctl): the stop
// must leave it to Add's caller, not close it and report it to a session
// Add took back. The test plays the poller (it calls p.stop itself, on a
// poller that was not started); a regular file makes EPOLL_CTL_ADD fail.
func TestAddFailingWhileStopping(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for try := 0; try < 50; try++ {
		p, err := newPoller(4096, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		e := &Engine{pollers: []*poller{p}}
		fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		c := &Conn{fd: int32(fd)}
		addErr := make(chan error, 1)
		go func() { addErr <- e.Add(c, newRecorder()) }()
		seen := false
		for !seen { // wait until Add has published c, and hold p.mu then
			p.mu.Lock()
			if seen = int(c.fd) < len(p.conns) && p.conns[c.fd] == c; !seen {
				p.mu.Unlock()
				select {
				case err := <-addErr: // Add was through before we looked
					addErr <- err
					seen = true
					p.mu.Lock()
				default:
				}
			}
		}
		time.Sleep(5 * time.Millisecond) // Add: epoll_ctl failed, waits for p.mu to unpublish c
		p.mu.Unlock()
		var panicked any
		func() {
			defer func() { panicked = recover() }()
			p.stop() // what the poller does on Stop's wake-up
		}()
		err = <-addErr
		_ = c.Close() // Add failed: not on a poller (a no-op when stop closed it)
		if panicked != nil {
			t.Fatalf("Add returned %v; the poller's stop then panicked: %v", err, panicked)
		}
	}
	t.Log("the interleaving was not hit")
}

// Close shuts the sending side and lingers: a peer that sends something
// before it sees the end (a ping, the rest of a frame) still gets every
// byte the socket had taken, then the end, instead of a reset that drops
// them; the connection is closed once the peer closes too.
func TestCloseLingersSoThePeerGetsEverything(t *testing.T) {
	client, c, r := added(t, Config{MaxWriteBuffer: 64 << 20})
	// Fill the socket (the client does not read yet) until bytes are kept.
	chunk := bytes.Repeat([]byte("y"), 16<<10)
	written := 0
	for {
		n, err := c.Write(chunk)
		if err != nil {
			t.Fatal(err)
		}
		written += n
		c.mu.Lock()
		kept := len(c.out)
		c.mu.Unlock()
		if kept > 0 {
			break
		}
	}
	c.mu.Lock()
	inSocket := written - len(c.out) // what the socket took: it should all arrive
	c.mu.Unlock()
	_ = c.Close()
	if _, err := client.Write([]byte("ping")); err != nil { // not having seen the end yet
		t.Fatal(err)
	}
	got, err := io.ReadAll(deadlined(client))
	if len(got) != inSocket || err != nil {
		t.Fatalf("client got %d of the %d bytes the socket had taken, then %v (ECONNRESET: %v)",
			len(got), inSocket, err, errors.Is(err, syscall.ECONNRESET))
	}
	select {
	case <-r.done:
		t.Fatal("closed before the peer was done")
	default:
	}
	client.Close()
	r.waitClosed(t)
}
