//go:build linux && !netpoll_portable

package netpoll

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Engine is a set of pollers, each an epoll instance and the goroutine
// that waits on it.
type Engine struct {
	cfg      Config
	pollers  []*poller
	next     atomic.Uint32
	wg       sync.WaitGroup
	stopOnce sync.Once
}

type poller struct {
	epfd  int
	wake  int    // an eventfd: written by Stop
	buf   []byte // what one read takes; the poller's own
	limit int    // Config.MaxWriteBuffer

	mu      sync.Mutex
	conns   []*Conn // by descriptor
	stopped bool

	lingers []linger // closing connections, oldest first; the poller's own
}

// linger is a closing connection whose input is read and dropped until
// its peer closes or until is past.
type linger struct {
	c     *Conn
	until time.Time
}

// Conn is a connection taken from the net package (Take) and, once
// added, held by one poller.
type Conn struct {
	mu      sync.Mutex
	fd      int32
	closing atomic.Bool // no more writes: Close asked for it, a write failed or the poller closed it
	closed  bool        // the descriptor is closed
	drained bool        // the poller lingers on it (its own)
	p       *poller     // nil until Add
	out     []byte      // what the socket did not take yet
	s       Session     // set by Add
}

// NewEngine makes an engine; Start starts its pollers.
func NewEngine(cfg Config) *Engine {
	cfg.defaults()
	return &Engine{cfg: cfg}
}

// Start makes the pollers and starts their goroutines.
func (e *Engine) Start() error {
	for range e.cfg.Pollers {
		p, err := newPoller(e.cfg.ReadBuffer, e.cfg.MaxWriteBuffer)
		if err != nil {
			for _, p := range e.pollers {
				p.release()
			}
			e.pollers = nil
			return err
		}
		e.pollers = append(e.pollers, p)
	}
	for _, p := range e.pollers {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			p.run()
		}()
	}
	return nil
}

func newPoller(readBuf, limit int) (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		_ = unix.Close(epfd)
		_ = unix.Close(wake)
		return nil, err
	}
	return &poller{epfd: epfd, wake: wake, buf: make([]byte, readBuf), limit: limit}, nil
}

func (p *poller) release() {
	_ = unix.Close(p.epfd)
	_ = unix.Close(p.wake)
}

// Stop closes every connection (each session's Closed is called) and
// ends the pollers; Add fails from here on.
func (e *Engine) Stop() {
	e.stopOnce.Do(func() {
		for _, p := range e.pollers {
			p.mu.Lock()
			gone := p.stopped // the poller ended on its own: its eventfd is closed
			p.stopped = true
			p.mu.Unlock()
			if !gone {
				one := uint64(1)
				_, _ = unix.Write(p.wake, (*[8]byte)(unsafe.Pointer(&one))[:])
			}
		}
		e.wg.Wait()
	})
}

// Take moves nc's socket out of the net package into c, a zero Conn
// (which a session may embed): the descriptor is duplicated
// (close-on-exec) and nc closed. Writes may start at once; reading
// starts with Add.
func Take(c *Conn, nc net.Conn) error {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return errors.New("netpoll: not a plain socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var fd int
	var derr error
	if err := rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return err
	}
	if derr != nil {
		return derr
	}
	_ = nc.Close()
	c.fd = int32(fd)
	return nil
}

// Add puts c on a poller, which hands what it reads to s. It fails when c
// is closed already (s.Closed is not called then) or the engine stopped.
func (e *Engine) Add(c *Conn, s Session) error {
	if len(e.pollers) == 0 {
		return ErrStopped
	}
	p := e.pollers[e.next.Add(1)%uint32(len(e.pollers))]
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing.Load() {
		return ErrClosed
	}
	c.s, c.p = s, p
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		c.s, c.p = nil, nil
		return ErrStopped
	}
	if int(c.fd) >= len(p.conns) {
		p.conns = append(p.conns, make([]*Conn, int(c.fd)+1-len(p.conns))...)
	}
	p.conns[c.fd] = c
	p.mu.Unlock()
	ev := unix.EpollEvent{Events: events(len(c.out) > 0), Fd: c.fd}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(c.fd), &ev); err != nil {
		p.mu.Lock()
		p.conns[c.fd] = nil
		p.mu.Unlock()
		c.s, c.p = nil, nil
		return err
	}
	return nil
}

// events is a connection's epoll interest: level-triggered reads, and
// writability while something waits to be written.
func events(out bool) uint32 {
	ev := uint32(unix.EPOLLIN | unix.EPOLLRDHUP)
	if out {
		ev |= unix.EPOLLOUT
	}
	return ev
}

func (p *poller) run() {
	events := make([]unix.EpollEvent, 128)
	for {
		timeout := -1
		if len(p.lingers) > 0 {
			timeout = max(int(time.Until(p.lingers[0].until)/time.Millisecond)+1, 0)
		}
		n, err := unix.EpollWait(p.epfd, events, timeout)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			p.stop() // the epoll instance is broken: nothing more can be read
			return
		}
		for i := range n {
			ev := &events[i]
			if int(ev.Fd) == p.wake {
				p.stop()
				return
			}
			p.mu.Lock()
			var c *Conn
			if int(ev.Fd) < len(p.conns) {
				c = p.conns[ev.Fd]
			}
			p.mu.Unlock()
			if c != nil {
				p.event(c, ev.Events)
			}
		}
		p.expire()
	}
}

// expire closes the lingering connections whose time is up.
func (p *poller) expire() {
	now := time.Now()
	i := 0
	for i < len(p.lingers) && !p.lingers[i].until.After(now) {
		p.close(p.lingers[i].c) // a no-op when its peer closed first
		p.lingers[i] = linger{}
		i++
	}
	p.lingers = p.lingers[i:]
	if len(p.lingers) == 0 {
		p.lingers = nil
	}
}

// event handles what epoll reported for c: it can take more bytes, it
// has bytes to read, or it is done.
func (p *poller) event(c *Conn, ev uint32) {
	if c.closing.Load() { // Close shut the socket's sending side and woke us
		p.drain(c, ev)
		return
	}
	if ev&unix.EPOLLOUT != 0 {
		c.flush()
	}
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) == 0 {
		return
	}
	n, err := rawIO(unix.SYS_READ, c.fd, p.buf)
	switch {
	case n > 0:
		c.s.Parse(p.buf[:n]) // level-triggered: what is left comes with the next wait
	case n == 0 || !temporary(err) || ev&(unix.EPOLLHUP|unix.EPOLLERR) != 0:
		p.close(c)
	}
}

// drain reads and drops what a closing connection's peer still sends,
// and closes it once the peer closed its end; expire closes it after
// lingerTime if the peer never does. Closing a socket with unread input
// would answer the peer with a reset, which throws away what the peer
// has not read yet: the close frame, the last events.
func (p *poller) drain(c *Conn, ev uint32) {
	if c.closed { // closed on this goroutine already: the descriptor is not its own
		return
	}
	if !c.drained {
		c.drained = true
		c.mu.Lock()
		if !c.closed {
			c.watchOut(false) // writable for good once shut down: stop hearing of it
		}
		c.mu.Unlock()
		p.lingers = append(p.lingers, linger{c, time.Now().Add(lingerTime)})
	}
	n, err := rawIO(unix.SYS_READ, c.fd, p.buf)
	if n == 0 || n < 0 && (!temporary(err) || ev&(unix.EPOLLHUP|unix.EPOLLERR) != 0) {
		p.close(c)
	}
}

// close closes c's descriptor and reports it to the session, once. A
// connection that Add gave up on (its registration failed while Stop
// listed it) is left to Add's caller.
func (p *poller) close(c *Conn) {
	c.mu.Lock()
	if c.closed || c.p != p {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.closing.Store(true)
	c.out = nil
	p.mu.Lock()
	p.conns[c.fd] = nil
	p.mu.Unlock()
	// Deregistered first: a copy of the descriptor in a child process
	// between fork and exec would otherwise keep the registration alive,
	// and its events would reach whichever connection gets the number next.
	_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(c.fd), nil)
	_ = unix.Close(int(c.fd))
	c.mu.Unlock()
	c.s.Closed()
}

// stop closes every connection of the poller and the poller itself.
func (p *poller) stop() {
	p.mu.Lock()
	p.stopped = true
	var all []*Conn
	for _, c := range p.conns {
		if c != nil {
			all = append(all, c)
		}
	}
	p.mu.Unlock()
	for _, c := range all {
		p.close(c)
	}
	p.release()
}

// Write writes b now, as far as the socket takes it, and keeps the rest
// for when it takes more. It fails on a closed connection, and closes the
// connection when the peer is gone or is too slow (ErrOverflow).
func (c *Conn) Write(b []byte) (int, error) {
	total := len(b)
	if total == 0 {
		return 0, nil
	}
	c.mu.Lock()
	if c.closing.Load() {
		c.mu.Unlock()
		return 0, ErrClosed
	}
	if len(c.out) == 0 {
		n, err := rawIO(unix.SYS_WRITE, c.fd, b)
		if n == len(b) { // the usual case, kept free of defers
			c.mu.Unlock()
			return n, nil
		}
		if !temporary(err) {
			c.closeLocked()
			c.mu.Unlock()
			return max(n, 0), err
		}
		b = b[max(n, 0):]
	}
	err := c.keep(b)
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return total, nil
}

// Writev is Write of several buffers in one system call.
func (c *Conn) Writev(bufs [][]byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing.Load() {
		return 0, ErrClosed
	}
	total := 0
	for len(bufs) > 0 && len(c.out) == 0 {
		var iov [64]unix.Iovec
		k, want := 0, 0
		for k < len(iov) && k < len(bufs) {
			if len(bufs[k]) > 0 {
				iov[k].Base = &bufs[k][0]
			}
			iov[k].SetLen(len(bufs[k]))
			want += len(bufs[k])
			k++
		}
		r, _, e := unix.RawSyscall(unix.SYS_WRITEV, uintptr(c.fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(k))
		n := int(r)
		if e != 0 {
			if !temporary(e) {
				c.closeLocked()
				return total, e
			}
			n = 0
		}
		total += n
		if n == want {
			bufs = bufs[k:]
			continue
		}
		for n >= len(bufs[0]) { // skip what went out; keep the rest below
			n -= len(bufs[0])
			bufs = bufs[1:]
		}
		if err := c.keep(bufs[0][n:]); err != nil {
			return total, err
		}
		total += len(bufs[0]) - n
		bufs = bufs[1:]
	}
	for _, b := range bufs {
		if err := c.keep(b); err != nil {
			return total, err
		}
		total += len(b)
	}
	return total, nil
}

// keep adds b to what waits for the socket; c.mu is held. Past the limit
// the connection is closed.
func (c *Conn) keep(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if c.p != nil && len(c.out)+len(b) > c.p.limit {
		c.closeLocked()
		return ErrOverflow
	}
	first := len(c.out) == 0
	c.out = append(c.out, b...)
	if first && c.p != nil {
		c.watchOut(true)
	}
	return nil
}

// flush writes what waits, when epoll says the socket takes more.
func (c *Conn) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing.Load() || len(c.out) == 0 {
		return
	}
	n, err := rawIO(unix.SYS_WRITE, c.fd, c.out)
	if !temporary(err) {
		c.closeLocked()
		return
	}
	if n > 0 {
		c.out = c.out[n:]
	}
	if len(c.out) == 0 {
		c.out = nil
		c.watchOut(false)
	}
}

// watchOut turns epoll's writability reports for c on or off; c.mu is
// held and c is on a poller.
func (c *Conn) watchOut(on bool) {
	ev := unix.EpollEvent{Events: events(on), Fd: c.fd}
	_ = unix.EpollCtl(c.p.epfd, unix.EPOLL_CTL_MOD, int(c.fd), &ev)
}

// Close ends the connection: what the socket holds still goes out, what
// waits beside it is dropped. On a poller, the socket's sending side is
// shut down (the peer sees the end after the last bytes) and the poller
// reads and drops the peer's input until it closes its end too, at most
// lingerTime, then closes the socket and calls the session's Closed;
// before, it is closed here.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closeLocked()
	return nil
}

func (c *Conn) closeLocked() {
	if c.closing.Load() {
		return
	}
	c.closing.Store(true)
	c.out = nil
	if c.p == nil {
		c.closed = true
		_ = unix.Close(int(c.fd))
		return
	}
	// Shut down for sending, the socket is writable for good: watching
	// for that wakes the poller, which takes it from there (drain).
	_ = unix.Shutdown(int(c.fd), unix.SHUT_WR)
	c.watchOut(true)
}

// rawIO is read(2) or write(2) on a non-blocking socket, without the
// scheduler's system call bookkeeping: the call never blocks, and a
// writer that spends most of its time in such calls (a broadcast) would
// otherwise have its P taken and handed to another thread over and over.
func rawIO(trap uintptr, fd int32, b []byte) (int, error) {
	r, _, e := unix.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// temporary reports whether err leaves the socket usable: none, or it
// would block.
func temporary(err error) bool {
	return err == nil || err == unix.EAGAIN || err == unix.EINTR
}
