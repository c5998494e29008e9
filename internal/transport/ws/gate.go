package ws

import (
	"sync"
	"time"

	"github.com/lesismal/nbio/nbhttp/websocket"
)

// gate closes a race of the poller library: a connection is put on the
// poller before the 101 answer is written, so a frame (or a close) sent by
// a quick client can reach onMessage/onClose before ServeHTTP has attached
// the session. Those handlers run on the library's per-connection task
// queue, never on the poller, so they may wait for ServeHTTP briefly.
type gate struct {
	m sync.Map // *websocket.Conn → chan struct{}, closed when the session is set
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// session returns c's session, waiting (bounded) while ServeHTTP sets it.
// It reads the session under the connection's lock (SessionWithLock, which
// does not block in this mode): SetSession takes the same lock, so the
// session's fields written before it are visible here.
func (g *gate) session(c *websocket.Conn) *session {
	if ss, ok := c.SessionWithLock().(*session); ok {
		return ss
	}
	v, _ := g.m.LoadOrStore(c, make(chan struct{}))
	ch := v.(chan struct{})
	if ss, ok := c.SessionWithLock().(*session); ok {
		g.m.CompareAndDelete(c, ch)
		return ss
	}
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
	}
	g.m.CompareAndDelete(c, ch)
	ss, _ := c.SessionWithLock().(*session)
	return ss
}

// open is called by ServeHTTP right after SetSession: it releases waiters.
func (g *gate) open(c *websocket.Conn) {
	if v, loaded := g.m.LoadOrStore(c, closedChan); loaded && v.(chan struct{}) != closedChan {
		close(v.(chan struct{}))
	}
	g.m.Delete(c)
}
