// Package hub is the local fan-out of one Tidings node: which connection
// listens to which channel, and the delivery of each publication to them.
//
// Design (the memory and throughput goals of PRODUCT.md):
//   - no goroutine per connection: a connection is a Sink the hub writes to;
//     reading is done by the transport's event loop;
//   - a fixed set of workers (one per CPU) each owns a share of the
//     connections; a publication is queued once to each worker that has a
//     subscriber of its channel, so a connection always receives messages in
//     publish order, and one channel's fan-out runs on every core;
//   - a worker drains its whole queue at once and appends the pre-encoded
//     frames to each touched connection, then writes each connection's
//     frames with one vectored write: several pending messages, one syscall;
//   - each message is encoded once per node (Frame), never per subscriber.
//
// Lock order: shard.mu before Conn.mu; worker.mu is a leaf.
package hub

import (
	"errors"
	"hash/maphash"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidings/tidings"
)

// Sink is the transport side of a connection.
type Sink interface {
	// Write sends the buffers in order, in one write where it can. It must
	// not block on a slow peer: a transport buffers, and closes a peer whose
	// buffer passes its limit (the slow-consumer policy).
	Write(bufs [][]byte) error
	// Close closes the connection; the transport then calls Hub.Detach.
	Close(code int, reason string)
}

// ErrTooManySubs is returned by Subscribe past the per-connection limit.
var ErrTooManySubs = tidings.Errorf(tidings.CodeTooManySubs, "subscription limit reached")

// ErrTooManyConns is returned by Attach past the per-user limit.
var ErrTooManyConns = tidings.Errorf(tidings.CodeRateLimited, "too many connections for this user")

// Options of a Hub.
type Options struct {
	Workers          int // default GOMAXPROCS
	MaxSubscriptions int // per connection; 0 = unlimited
	MaxConnsPerUser  int // 0 = unlimited
	// MinWriteInterval, when set, writes publications to one connection
	// at most about once per interval while they keep coming: what
	// arrives within it after a write goes out with the others at its
	// end, in one write. The first publication after a quiet spell, and
	// every reply, goes out at once. It trades up to this much latency
	// for fewer, larger writes to busy connections; 0 writes at once.
	MinWriteInterval time.Duration
	Logger           *slog.Logger
}

// Hub routes publications to local connections. Its zero value is not
// usable; call New.
type Hub struct {
	opt     Options
	epoch   time.Time // origin of clock
	seed    maphash.Seed
	shards  [64]shard
	workers []*worker
	nextID  atomic.Uint64
	log     *slog.Logger

	usersMu sync.Mutex
	users   map[string]int // user → authenticated connections

	conns      atomic.Int64
	published  atomic.Uint64
	deliveries atomic.Uint64
	wg         sync.WaitGroup
	stopOnce   sync.Once
}

type shard struct {
	mu    sync.RWMutex
	chans map[string]*channel
}

// channel holds one channel's subscribers, split by owning worker.
type channel struct {
	subs []connSet // indexed by worker
	n    int
}

// connSet is one worker's subscribers of a channel: a short slice while
// small (a personal channel has one connection per open tab or device),
// a map once large (a broadcast channel), so the many small channels cost
// one small allocation each and the large ones keep O(1) removal.
type connSet struct {
	small []*Conn
	big   map[*Conn]struct{}
}

// smallSet is the size past which a connSet becomes a map.
const smallSet = 8

func (s *connSet) len() int { return len(s.small) + len(s.big) }

// add reports false when c was already in the set.
func (s *connSet) add(c *Conn) bool {
	if s.big != nil {
		if _, ok := s.big[c]; ok {
			return false
		}
		s.big[c] = struct{}{}
		return true
	}
	if slices.Contains(s.small, c) {
		return false
	}
	if len(s.small) < smallSet {
		s.small = append(s.small, c)
		return true
	}
	s.big = make(map[*Conn]struct{}, 2*smallSet)
	for _, o := range s.small {
		s.big[o] = struct{}{}
	}
	s.small = nil
	s.big[c] = struct{}{}
	return true
}

// remove reports whether c was in the set.
func (s *connSet) remove(c *Conn) bool {
	if s.big != nil {
		if _, ok := s.big[c]; !ok {
			return false
		}
		delete(s.big, c)
		return true
	}
	i := slices.Index(s.small, c)
	if i < 0 {
		return false
	}
	last := len(s.small) - 1
	s.small[i] = s.small[last]
	s.small[last] = nil
	s.small = s.small[:last]
	return true
}

// Conn is the hub's view of one connection. The fields a delivery
// touches come first, so that they share the connection's first cache
// lines (a broadcast walks thousands of connections, none of them in
// cache); a transport may embed the Conn in its own session (AttachConn)
// for the same reason.
type Conn struct {
	// Owned by the worker.
	Kind Kind
	// Packed beside Kind (MinWriteInterval): kept for the next tick, a
	// reply in this round, when last written (clock).
	later   bool
	urgent  bool
	wrote   int32
	sink    Sink
	pending [][]byte
	seen    []seen // highest Seq delivered per channel
	held    []held // channels being resumed

	ID uint64
	w  *worker

	lastSeen atomic.Int64 // unix nanoseconds of the last sign of life
	expires  atomic.Int64 // unix nanoseconds the credential ends; 0: never

	mu       sync.Mutex
	user     string
	channels []string // subscribed channels; short (MaxSubscriptions bounds it)
	closed   bool
}

// User is the authenticated user of the connection ("" before auth).
func (c *Conn) User() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.user
}

// Touch records a sign of life (any frame, pong or ping from the peer).
func (c *Conn) Touch() { c.lastSeen.Store(time.Now().UnixNano()) }

// New makes a hub; Run starts its workers.
func New(opt Options) *Hub {
	if opt.Workers <= 0 {
		opt.Workers = runtime.GOMAXPROCS(0)
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	h := &Hub{opt: opt, epoch: time.Now(), seed: maphash.MakeSeed(), log: opt.Logger, users: map[string]int{}}
	for i := range h.shards {
		h.shards[i].chans = map[string]*channel{}
	}
	for i := 0; i < opt.Workers; i++ {
		h.workers = append(h.workers, newWorker(h, i))
	}
	return h
}

// Start runs the workers until Stop.
func (h *Hub) Start() {
	for _, w := range h.workers {
		h.wg.Add(1)
		go func() { defer h.wg.Done(); w.run() }()
	}
}

// Stop ends the workers after they drain what is queued; idempotent.
func (h *Hub) Stop() {
	h.stopOnce.Do(func() {
		for _, w := range h.workers {
			w.stop()
		}
		h.wg.Wait()
	})
}

// Attach registers a new connection. It belongs to no channel and no user
// until Authenticate and Subscribe.
func (h *Hub) Attach(kind Kind, sink Sink) *Conn {
	c := new(Conn)
	h.AttachConn(c, kind, sink)
	return c
}

// AttachConn is Attach of a Conn the caller allocated (a zero Conn, part
// of the transport's session).
func (h *Hub) AttachConn(c *Conn, kind Kind, sink Sink) {
	id := h.nextID.Add(1)
	c.ID, c.Kind, c.sink, c.w = id, kind, sink, h.workers[id%uint64(len(h.workers))]
	c.Touch()
	c.w.add(c)
	h.conns.Add(1)
}

// Authenticate binds the connection to user, whose credential is valid
// until expires (zero: no end); Sweep closes it once that has passed. A
// connection is bound once; binding it again to the same user only takes
// the new credential's end (a client renews its token on an open
// connection that way), to another user is an error.
func (h *Hub) Authenticate(c *Conn, user string, expires time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errors.New("connection closed")
	}
	if c.user == user {
		c.setExpires(expires)
		return nil
	}
	if c.user != "" {
		return tidings.Errorf(tidings.CodeForbidden, "connection already authenticated as another user")
	}
	h.usersMu.Lock()
	if h.opt.MaxConnsPerUser > 0 && h.users[user] >= h.opt.MaxConnsPerUser {
		h.usersMu.Unlock()
		return ErrTooManyConns
	}
	h.users[user]++
	h.usersMu.Unlock()
	c.user = user
	c.setExpires(expires)
	return nil
}

func (c *Conn) setExpires(t time.Time) {
	if t.IsZero() {
		c.expires.Store(0)
	} else {
		c.expires.Store(t.UnixNano())
	}
}

// Detach removes the connection from every channel; idempotent.
func (h *Hub) Detach(c *Conn) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	chans := slices.Clone(c.channels)
	user := c.user
	c.mu.Unlock()

	for _, ch := range chans {
		h.unsubscribe(c, ch)
	}
	if user != "" {
		h.usersMu.Lock()
		if h.users[user]--; h.users[user] <= 0 {
			delete(h.users, user)
		}
		h.usersMu.Unlock()
	}
	c.w.remove(c)
	h.conns.Add(-1)
}

// clock is milliseconds since the hub started, plus one: 0 stands for
// never. It wraps after 24 days; comparisons subtract, so a wrap misjudges
// only a connection silent for as long (kept for one tick at most).
func (h *Hub) clock() int32 { return int32(time.Since(h.epoch)/time.Millisecond) + 1 }

func (h *Hub) shard(channel string) *shard {
	return &h.shards[maphash.String(h.seed, channel)%uint64(len(h.shards))]
}

// Subscribe adds the connection to channel. It reports false when it was
// already subscribed (subscribing twice never delivers twice).
func (h *Hub) Subscribe(c *Conn, name string) (bool, error) {
	s := h.shard(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false, errors.New("connection closed")
	}
	if slices.Contains(c.channels, name) {
		return false, nil
	}
	if h.opt.MaxSubscriptions > 0 && len(c.channels) >= h.opt.MaxSubscriptions {
		return false, ErrTooManySubs
	}
	c.channels = append(c.channels, name)
	ch := s.chans[name]
	if ch == nil {
		ch = &channel{subs: make([]connSet, len(h.workers))}
		s.chans[name] = ch
	}
	if ch.subs[c.w.idx].add(c) {
		ch.n++
	}
	return true, nil
}

// Unsubscribe removes the connection from channel; it reports whether it
// was subscribed.
func (h *Hub) Unsubscribe(c *Conn, name string) bool {
	c.mu.Lock()
	ok := slices.Contains(c.channels, name)
	c.mu.Unlock()
	if !ok {
		return false
	}
	return h.unsubscribe(c, name)
}

func (h *Hub) unsubscribe(c *Conn, name string) bool {
	s := h.shard(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	c.mu.Lock()
	if i := slices.Index(c.channels, name); i >= 0 {
		c.channels = slices.Delete(c.channels, i, i+1)
	}
	c.mu.Unlock()
	ch := s.chans[name]
	if ch == nil {
		return false
	}
	if !ch.subs[c.w.idx].remove(c) {
		return false
	}
	if ch.n--; ch.n == 0 {
		delete(s.chans, name)
	}
	return true
}

// Publish queues m for every local subscriber of its channel and returns
// without waiting for delivery. It never blocks on a connection.
func (h *Hub) Publish(m *tidings.Message) {
	h.published.Add(1)
	s := h.shard(m.Channel)
	s.mu.RLock()
	ch := s.chans[m.Channel]
	if ch == nil {
		s.mu.RUnlock()
		return
	}
	f := NewFrame(m)
	for i := range ch.subs {
		if ch.subs[i].len() > 0 {
			h.workers[i].enqueue(job{ch: ch, shard: s, frame: f})
		}
	}
	s.mu.RUnlock()
}

// Flush writes, on every worker, what is queued now and what coalescing
// (MinWriteInterval) keeps for a later write, turns coalescing off, and
// returns when that is done. A drain calls it before closing connections,
// so that nothing kept for a tick is lost with them.
func (h *Hub) Flush() {
	done := make(chan struct{}, len(h.workers))
	for _, w := range h.workers {
		if !w.enqueue(job{flushed: done}) { // Stop writes everything before the worker ends
			done <- struct{}{}
		}
	}
	for range h.workers {
		<-done
	}
}

// Send queues raw wire bytes for one connection, in order with its other
// deliveries (replies, pings and close frames use it).
func (h *Hub) Send(c *Conn, b []byte) { c.w.enqueue(job{conn: c, raw: b}) }

// Stats is a snapshot of the hub's counters.
type Stats struct {
	Connections int64
	Users       int
	Channels    int
	Published   uint64
	Deliveries  uint64
}

// Stats returns the current counters.
func (h *Hub) Stats() Stats {
	st := Stats{Connections: h.conns.Load(), Published: h.published.Load(), Deliveries: h.deliveries.Load()}
	h.usersMu.Lock()
	st.Users = len(h.users)
	h.usersMu.Unlock()
	for i := range h.shards {
		s := &h.shards[i]
		s.mu.RLock()
		st.Channels += len(s.chans)
		s.mu.RUnlock()
	}
	return st
}

// Online reports whether user has a connection on this node.
func (h *Hub) Online(user string) bool {
	h.usersMu.Lock()
	defer h.usersMu.Unlock()
	return h.users[user] > 0
}

// Sweep closes connections silent for longer than idle (no frame, no pong)
// with 1001, and those whose credential has expired with 1008, and queues
// a ping to the others; ping says which kinds get one and what bytes. The
// transports call it from one ticker. Server-Sent Events clients never
// send anything, so their connections are not checked for idleness (a
// dead one is found when a write fails). A waiting poll is not closed for
// its credential: it was checked when the request came, and the wait is
// short.
func (h *Hub) Sweep(now time.Time, idle time.Duration, ping map[Kind][]byte) (idled, expired int) {
	limit := now.Add(-idle).UnixNano()
	for _, w := range h.workers {
		for _, c := range w.snapshot() {
			if exp := c.expires.Load(); exp != 0 && exp <= now.UnixNano() && c.Kind != KindJSON {
				expired++
				h.CloseConn(c, 1008, "token expired")
				continue
			}
			// Only WebSocket peers talk back; SSE streams and waiting
			// polls are ended by a failed write or their own timeout.
			if c.Kind == KindWS && c.lastSeen.Load() < limit {
				idled++
				h.CloseConn(c, 1001, "idle timeout")
				continue
			}
			if p := ping[c.Kind]; p != nil {
				h.Send(c, p)
			}
		}
	}
	return idled, expired
}

// ForEach calls fn for every attached connection (drain, admin).
func (h *Hub) ForEach(fn func(*Conn)) {
	for _, w := range h.workers {
		for _, c := range w.snapshot() {
			fn(c)
		}
	}
}

// CloseConn closes c behind everything queued for it: its worker writes
// what c has pending, then has the transport close it with code and
// reason (a close frame, where the transport has one). Once the hub is
// stopping, c is closed at once.
func (h *Hub) CloseConn(c *Conn, code int, reason string) {
	if !c.w.enqueue(job{conn: c, close: &closing{code, reason}}) {
		c.sink.Close(code, reason)
	}
}
