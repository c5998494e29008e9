// Package netpoll is the poller the WebSocket and SSE transports run
// their connections on: no goroutine per connection. On Linux one epoll
// loop per poller goroutine reads every connection it holds and hands
// the bytes to the connection's Session; writes go straight to the
// socket from the writer's goroutine, and what the socket does not take
// is kept and sent when epoll says it can take more. Elsewhere (a
// development fallback) each connection has a reading goroutine.
//
// A connection's descriptor is closed only by its poller (or, before it
// is on one, by Close itself), under the connection's lock, so a write
// never reaches a descriptor number that a newer connection got since.
//
// Why not a poller library: Tidings ran on nbio until it wrote its own
// (docs/BENCHMARKS.md, "Our own poller"). A broadcast is one write(2) per
// subscriber from a hub worker; through the Go scheduler's system call
// path, each write that the kernel makes wait (the loopback receiver's
// wakeup) let the runtime's monitor take the worker's P and hand it to
// another thread, thousands of times a second. Raw, non-blocking system
// calls avoid that. Owning the connection record also let a session
// embed it (one allocation, one cache miss per delivery), allowed writes
// before the connection is on a poller, and dropped two workarounds (a
// probe that the poller loop ran before Stop, and writes held until
// registration). Together: 13 % less server CPU per delivery at one
// broadcast a second, over nine interleaved pairs.
package netpoll

import (
	"errors"
	"net"
	"time"
)

// lingerTime bounds how long a closing connection waits for its peer: on
// epoll, its input is read and dropped until the peer closes its end; on
// the portable engine, the peer has that long to take what was written
// before the close.
const lingerTime = time.Second

// Session is what a poller reports a connection's events to.
type Session interface {
	// Parse takes bytes read from the connection, on the poller's
	// goroutine, one call at a time; data is valid only during the call.
	Parse(data []byte)
	// Closed is called once, after the connection is closed by either
	// side or by the engine's Stop.
	Closed()
}

// Config of an engine.
type Config struct {
	Pollers        int // poller goroutines; default 1
	MaxWriteBuffer int // bytes kept for one peer that reads too slowly before it is closed; default 4 MiB
	ReadBuffer     int // bytes read at once, one buffer per poller; default 64 KiB
}

func (c *Config) defaults() {
	if c.Pollers <= 0 {
		c.Pollers = 1
	}
	if c.MaxWriteBuffer <= 0 {
		c.MaxWriteBuffer = 4 << 20
	}
	if c.ReadBuffer <= 0 {
		c.ReadBuffer = 64 << 10
	}
}

var (
	// ErrClosed is the error of a write to a closed connection.
	ErrClosed = net.ErrClosed
	// ErrOverflow is the error of the write that found the peer too slow:
	// more than MaxWriteBuffer bytes waiting. The connection is closed.
	ErrOverflow = errors.New("netpoll: peer too slow: write buffer over its limit")
	// ErrStopped is Add's error once the engine stopped.
	ErrStopped = errors.New("netpoll: engine stopped")
)
