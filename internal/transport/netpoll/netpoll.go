// Package netpoll holds what the epoll-driven transports (WebSocket, SSE)
// share about the poller library they run on.
package netpoll

import (
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lesismal/nbio"
)

// probe is the session of a connection WaitStarted uses.
type probe struct {
	armed atomic.Bool // stored before the poller sees the connection
	got   chan struct{}
}

// Parse is how Dispatch hands a connection's bytes to its session; for a
// probe, any byte proves the loop runs.
func (p *probe) Parse([]byte) error {
	if p.armed.Load() {
		select {
		case p.got <- struct{}{}:
		default:
		}
	}
	return nil
}

// Parser is a connection session that takes the bytes the poller reads.
type Parser interface{ Parse(data []byte) error }

// Dispatch is the engines' data handler: it hands bytes to the
// connection's session when it is a Parser (the probes of WaitStarted
// included). The transports' engines must install it.
func Dispatch(c *nbio.Conn, data []byte) {
	if p, ok := c.Session().(Parser); ok {
		_ = p.Parse(data)
	}
}

// WaitStarted returns once every poller goroutine of the engine runs its
// event loop; call it right after Start. An nbio poller clears its stop flag when its goroutine
// begins, so an engine stopped before that point never stops: its Stop
// waits forever. A node stopped right after it started (a failed start,
// tests) would hang. One loopback connection per poller, with a byte for
// the poller to read, proves its loop is running.
func WaitStarted(e *nbio.Engine, timeout time.Duration) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	n := e.NPoller
	seen := make([]bool, n)
	deadline := time.Now().Add(timeout)
	// nbio picks a connection's poller by its descriptor number. What is
	// opened stays open until the end, and a spacer file shifts the next
	// number whenever a probe lands on a poller already seen.
	var open []io.Closer
	var probes []*nbio.Conn
	defer func() {
		for _, c := range open {
			_ = c.Close()
		}
		for _, c := range probes {
			_ = c.Close()
		}
	}()
	for left := n; left > 0; {
		if time.Now().After(deadline) || len(open) > 16*n {
			return errors.New("poller loop did not start in time")
		}
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return err
		}
		open = append(open, client)
		nbc, err := probeConn(e, ln, client, seen, deadline)
		if nbc != nil {
			probes = append(probes, nbc)
		}
		if err != nil {
			return err
		}
		if nbc != nil && nbc.Session() == nil { // a poller already seen
			if f, err := os.Open(os.DevNull); err == nil {
				open = append(open, f)
			}
		}
		left = 0
		for _, ok := range seen {
			if !ok {
				left++
			}
		}
	}
	return nil
}

// probeConn accepts client's connection and, when its poller is not yet
// seen, puts it on the poller and waits for the poller to read a byte.
func probeConn(e *nbio.Engine, ln net.Listener, client net.Conn, seen []bool, deadline time.Time) (*nbio.Conn, error) {
	server, err := ln.Accept()
	if err != nil {
		return nil, err
	}
	nbc, err := Transfer(func() (*nbio.Conn, error) { return nbio.NBConn(server) })
	if err != nil {
		_ = server.Close()
		return nil, err
	}
	i := nbc.Hash() % len(seen) // how nbio picks the poller
	if seen[i] {
		return nbc, nil
	}
	p := &probe{got: make(chan struct{}, 1)}
	nbc.SetSession(p)
	p.armed.Store(true)
	if _, err := e.AddConn(nbc); err != nil {
		return nil, err
	}
	if _, err := client.Write([]byte{0}); err != nil {
		return nbc, err
	}
	select {
	case <-p.got:
		seen[i] = true
		return nbc, nil
	case <-time.After(time.Until(deadline)):
		return nbc, errors.New("poller loop did not start in time")
	}
}

// Transfer runs move, which puts a connection on a poller (nbio dups its
// descriptor), and marks the copy close-on-exec. The library's dup leaves
// the flag off: a process started at that moment would hold the socket
// open after the poller closed it, the poller's registration would outlive
// the descriptor, and the peer's hang-up would be reported, again and
// again, for whatever connection next gets that descriptor number: each
// closed as soon as it arrives (seen when a test started client processes
// while a server started). The fork lock is how Go itself keeps such a
// copy out of a starting process.
func Transfer(move func() (*nbio.Conn, error)) (*nbio.Conn, error) {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	nbc, err := move()
	if err == nil {
		closeOnExec(nbc)
	}
	return nbc, err
}
