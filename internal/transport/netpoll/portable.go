//go:build !linux || netpoll_portable

package netpoll

import (
	"net"
	"sync"
	"time"
)

// The portable engine: a reading goroutine per connection, and a writing
// one while bytes wait. It keeps Tidings working where there is no epoll
// (development machines); Linux builds use epoll_linux.go. The tag
// netpoll_portable selects it on Linux too, for its tests.

// Engine tracks the connections it reads.
type Engine struct {
	cfg     Config
	mu      sync.Mutex
	conns   map[*Conn]struct{}
	stopped bool
	wg      sync.WaitGroup
}

// Conn is a connection taken from the net package.
type Conn struct {
	nc      net.Conn
	mu      sync.Mutex
	out     []byte
	limit   int  // 0 until Add: no limit
	writing bool // a writer goroutine runs
	closing bool
	s       Session
}

// NewEngine makes an engine.
func NewEngine(cfg Config) *Engine {
	cfg.defaults()
	return &Engine{cfg: cfg, conns: map[*Conn]struct{}{}}
}

// Start does nothing: connections get their goroutines from Add.
func (e *Engine) Start() error { return nil }

// Take makes c, a zero Conn, a wrapper of nc.
func Take(c *Conn, nc net.Conn) error {
	c.nc = nc
	return nil
}

// Add starts reading c for s; see the epoll engine.
func (e *Engine) Add(c *Conn, s Session) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return ErrStopped
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return ErrClosed
	}
	c.s, c.limit = s, e.cfg.MaxWriteBuffer
	e.conns[c] = struct{}{}
	e.wg.Add(1)
	go e.read(c)
	return nil
}

func (e *Engine) read(c *Conn) {
	defer e.wg.Done()
	buf := make([]byte, 4<<10)
	for {
		n, err := c.nc.Read(buf)
		if n > 0 {
			c.s.Parse(buf[:n])
		}
		if err != nil {
			break
		}
	}
	c.mu.Lock()
	c.closing, c.out = true, nil
	c.mu.Unlock()
	_ = c.nc.Close()
	e.mu.Lock()
	delete(e.conns, c)
	e.mu.Unlock()
	c.s.Closed()
}

// Stop closes every connection and waits for their Closed calls. What
// was written before still goes out (within lingerTime): a drain's close
// frames are written by the connections' writers, not yet on the wire.
func (e *Engine) Stop() {
	e.mu.Lock()
	e.stopped = true
	for c := range e.conns {
		_ = c.Close()
	}
	e.mu.Unlock()
	e.wg.Wait()
}

// Write queues b for the connection's writer.
func (c *Conn) Write(b []byte) (int, error) { return c.Writev([][]byte{b}) }

// Writev queues several buffers as one: no other write lands between
// them (a multi-channel SSE event is its id line and the event).
func (c *Conn) Writev(bufs [][]byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return 0, ErrClosed
	}
	total := 0
	for _, b := range bufs {
		total += len(b)
	}
	if c.limit > 0 && len(c.out)+total > c.limit {
		c.closing, c.out = true, nil
		_ = c.nc.Close()
		return 0, ErrOverflow
	}
	for _, b := range bufs {
		c.out = append(c.out, b...)
	}
	if !c.writing && len(c.out) > 0 {
		c.writing = true
		go c.write()
	}
	return total, nil
}

func (c *Conn) write() {
	for {
		c.mu.Lock()
		b := c.out
		c.out = nil
		if len(b) == 0 {
			c.writing = false
			if c.closing {
				_ = c.nc.Close() // Close waited for what was queued before it
			}
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		if _, err := c.nc.Write(b); err != nil {
			_ = c.Close()
		}
	}
}

// Close ends the connection once what was written before it went out,
// or after lingerTime if the peer does not take it.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return nil
	}
	c.closing = true
	if !c.writing {
		return c.nc.Close()
	}
	return c.nc.SetWriteDeadline(time.Now().Add(lingerTime)) // the writer closes it
}
