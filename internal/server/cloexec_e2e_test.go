//go:build linux

package server

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// Connections the poller holds must not leak into processes the node's
// process starts: a socket kept open by a child outlives the poller's close,
// and the peer's hang-up then closes whatever connection next gets its
// descriptor number. Every socket of the process is close-on-exec while
// WebSocket connections and SSE streams are open.
func TestConnectionsAreCloseOnExec(t *testing.T) {
	n := startNode(t)
	ws := n.connect("alice")
	if got := ws.call(map[string]any{"op": "ping", "ref": 1}); got["op"] != "pong" {
		t.Fatalf("ping: %v", got)
	}
	s := n.openUser("bob", "", nil)
	s.start()

	// As a starting process would: no connection is mid-way to the poller.
	syscall.ForkLock.Lock()
	defer syscall.ForkLock.Unlock()
	dir := "/proc/self/fd"
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	sockets := 0
	for _, e := range entries {
		target, err := os.Readlink(dir + "/" + e.Name())
		if err != nil || !strings.HasPrefix(target, "socket:") {
			continue
		}
		fd, _ := strconv.Atoi(e.Name())
		flags, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFD, 0)
		if errno != 0 {
			continue // closed since the listing
		}
		sockets++
		if flags&syscall.FD_CLOEXEC == 0 {
			t.Errorf("socket descriptor %d (%s) is not close-on-exec", fd, target)
		}
	}
	if sockets < 4 { // the listener and both ends of two connections at least
		t.Fatalf("found %d sockets", sockets)
	}
}
