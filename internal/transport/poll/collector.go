package poll

import "sync"

// collector is the hub.Sink of one poll request: the hub's worker appends
// each server event (hub.KindJSON bytes, shared and read-only) and the
// request's goroutine takes them. Write never blocks and does no parsing,
// so a poll costs the worker no more than any other connection.
type collector struct {
	signal  chan struct{} // a write or a close happened; capacity 1
	flushed chan struct{} // closed when the flush marker went through

	mu      sync.Mutex
	items   [][]byte
	marker  []byte // its address identifies it among the writes
	marked  bool
	closing bool // the hub asked to end this request (drain, kick)
	done    bool // the answer is built: drop whatever comes
}

func newCollector() *collector {
	return &collector{
		signal:  make(chan struct{}, 1),
		flushed: make(chan struct{}),
		marker:  make([]byte, 1),
	}
}

// Write implements hub.Sink.
func (c *collector) Write(bufs [][]byte) error {
	c.mu.Lock()
	if !c.done {
		for _, b := range bufs {
			if len(b) == 1 && &b[0] == &c.marker[0] {
				if !c.marked {
					c.marked = true
					close(c.flushed)
				}
				continue
			}
			c.items = append(c.items, b)
		}
	}
	c.mu.Unlock()
	c.wake()
	return nil
}

// Close implements hub.Sink. The idle sweep (code 1001) is ignored: it
// judges a connection by signs of life from its peer, and a poll has none
// to give while it waits; its own timeout bounds it, and the request's
// context ends it when the client goes away. Any other close (a drain)
// ends the wait at once.
func (c *collector) Close(code int, _ string) {
	if code == 1001 {
		return
	}
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
	c.wake()
}

func (c *collector) wake() {
	select {
	case c.signal <- struct{}{}:
	default:
	}
}

// take returns what was written since the last take, and whether the
// hub asked to end the request.
func (c *collector) take() (items [][]byte, closing bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	items, c.items = c.items, nil
	return items, c.closing
}

// finish returns what is left and drops anything written later.
func (c *collector) finish() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	items := c.items
	c.items = nil
	c.done = true
	return items
}
