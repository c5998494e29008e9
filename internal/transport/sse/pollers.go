package sse

import (
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/lesismal/nbio"
)

// probe is the session of a connection waitPollers uses.
type probe struct {
	armed atomic.Bool // stored before the poller sees the connection
	got   chan struct{}
}

func (p *probe) data() {
	if p.armed.Load() {
		select {
		case p.got <- struct{}{}:
		default:
		}
	}
}

// waitPollers returns once every poller goroutine of the engine runs its
// event loop. An nbio poller clears its stop flag when its goroutine
// begins, so an engine stopped before that point never stops: its Stop
// waits forever. A node stopped right after it started (a failed start,
// tests) would hang. One loopback connection per poller, with a byte for
// the poller to read, proves its loop is running.
func (s *Server) waitPollers(timeout time.Duration) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	n := s.engine.NPoller
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
		nbc, err := s.probeConn(ln, client, seen, deadline)
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
func (s *Server) probeConn(ln net.Listener, client net.Conn, seen []bool, deadline time.Time) (*nbio.Conn, error) {
	server, err := ln.Accept()
	if err != nil {
		return nil, err
	}
	nbc, err := nbio.NBConn(server)
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
	if _, err := s.engine.AddConn(nbc); err != nil {
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
