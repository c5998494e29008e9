package hub

import (
	"sync"
	"time"
)

// job is one unit of work for a worker: a publication to the worker's
// share of a channel's subscribers, or raw bytes for one connection.
type job struct {
	ch    *channel
	shard *shard
	frame *Frame

	conn    *Conn
	raw     []byte
	hold    string   // start holding this channel's frames for conn
	release *release // deliver a replay, then the held frames
	close   *closing // write what conn has pending, then close it

	flushed chan<- struct{} // Flush: write what is kept for a tick, then signal
}

// worker owns a share of the connections: only it appends to their pending
// frames and writes publications to them, which keeps per-connection order
// without a lock on the hot path.
type worker struct {
	h   *Hub
	idx int

	mu      sync.Mutex
	queue   []job
	stopped bool
	wake    chan struct{}

	connsMu sync.Mutex
	conns   map[*Conn]struct{}

	touched []*Conn // connections with pending frames in this round
	subs    []*Conn // a publication's subscribers, taken under the shard lock

	// Coalescing, when Options.MinWriteInterval is set: a connection
	// written since the last tick keeps its publications for the next one
	// (later), and a tick writes every connection kept for it. Ticks run
	// only while some connection waits; the first publication after a
	// quiet spell goes out at once.
	interval time.Duration
	later    []*Conn
	lastTick int32     // w.h.clock() of the last tick; 0: none yet
	nextTick time.Time // when the next tick is due, while later is not empty
	timer    *time.Timer
}

func newWorker(h *Hub, idx int) *worker {
	w := &worker{h: h, idx: idx, wake: make(chan struct{}, 1), conns: map[*Conn]struct{}{},
		interval: h.opt.MinWriteInterval}
	if w.interval > 0 {
		w.timer = time.NewTimer(w.interval)
		w.timer.Stop()
	}
	return w
}

func (w *worker) add(c *Conn) {
	w.connsMu.Lock()
	w.conns[c] = struct{}{}
	w.connsMu.Unlock()
}

func (w *worker) remove(c *Conn) {
	w.connsMu.Lock()
	delete(w.conns, c)
	w.connsMu.Unlock()
}

func (w *worker) snapshot() []*Conn {
	w.connsMu.Lock()
	defer w.connsMu.Unlock()
	out := make([]*Conn, 0, len(w.conns))
	for c := range w.conns {
		out = append(out, c)
	}
	return out
}

// enqueue queues j; it reports false, and drops j, once the worker has
// been told to stop (a job queued before that is done before it stops).
func (w *worker) enqueue(j job) bool {
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		return false
	}
	w.queue = append(w.queue, j)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return true
}

func (w *worker) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *worker) run() {
	var batch []job
	for {
		w.mu.Lock()
		if len(w.queue) == 0 {
			stopped := w.stopped
			w.mu.Unlock()
			if stopped {
				w.tick()
				return
			}
			if len(w.later) == 0 {
				<-w.wake
				continue
			}
			select {
			case <-w.wake:
			case <-w.timer.C:
				w.tick()
			}
			continue
		}
		batch, w.queue = w.queue, batch[:0]
		w.mu.Unlock()

		w.process(batch)
		clear(batch) // drop references to frames for the GC
		if len(w.later) > 0 && !time.Now().Before(w.nextTick) {
			w.tick() // a worker that never runs out of work never waits on the timer
		}
	}
}

// process appends every job's bytes to the pending frames of the
// connections it concerns, then writes each touched connection once.
func (w *worker) process(batch []job) {
	if len(batch) == 1 && batch[0].frame != nil && w.interval == 0 {
		w.publishAlone(&batch[0])
		return
	}
	var flushed []chan<- struct{}
	var n uint64
	for i := range batch {
		j := &batch[i]
		if j.flushed != nil {
			flushed = append(flushed, j.flushed)
			continue
		}
		if j.close != nil {
			n += w.closeConn(j.conn, j.close)
			continue
		}
		if j.conn != nil {
			switch {
			case j.hold != "":
				w.hold(j.conn, j.hold)
			case j.release != nil:
				w.release(j.conn, j.release)
			default:
				w.push(j.conn, j.raw)
			}
			if w.interval > 0 && !j.conn.urgent {
				// A reply, a ping or a replay is not kept for a tick, and
				// takes what the connection keeps along with it.
				j.conn.urgent = true
				w.touched = append(w.touched, j.conn)
			}
			continue
		}
		for _, c := range w.subscribers(j) {
			w.deliver(c, j.frame)
		}
	}
	clear(w.subs)
	w.subs = w.subs[:0]
	if w.interval == 0 {
		for _, c := range w.touched {
			if len(c.pending) == 0 {
				continue // closed in this round, after its write
			}
			n += uint64(len(c.pending))
			_ = c.sink.Write(c.pending) // a failed write closes the connection in the transport
			c.sent()
		}
	} else {
		now := w.h.clock()
		for _, c := range w.touched {
			switch {
			case len(c.pending) == 0: // written already (listed twice)
			case !c.urgent && (c.later || c.wrote != 0 && c.wrote-w.lastTick >= 0):
				w.keep(c)
			default:
				n += w.write(c, now)
			}
			c.urgent = false
		}
	}
	clear(w.touched)
	w.touched = w.touched[:0]
	w.h.deliveries.Add(n)
	if flushed != nil {
		w.tick()
		w.interval = 0 // a drain: from here on, every write at once
		for _, f := range flushed {
			f <- struct{}{}
		}
	}
}

// publishAlone delivers a publication that came alone (the usual batch
// of a quiet channel): each subscriber is written right after its frame
// is appended, while its memory is in cache, instead of in a second pass
// over them all. The subscribers are listed under the shard lock and
// written after it, as process does.
func (w *worker) publishAlone(j *job) {
	var n uint64
	for _, c := range w.subscribers(j) {
		w.deliver(c, j.frame)
		if len(c.pending) > 0 {
			n += uint64(len(c.pending))
			_ = c.sink.Write(c.pending) // a failed write closes the connection in the transport
			c.sent()
		}
	}
	clear(w.subs)
	w.subs = w.subs[:0]
	clear(w.touched)
	w.touched = w.touched[:0]
	w.h.deliveries.Add(n)
}

// subscribers lists, in w.subs, the worker's share of the subscribers
// of j's channel, taken under the shard lock so that delivering and
// writing happen after it. The caller clears w.subs when done.
func (w *worker) subscribers(j *job) []*Conn {
	j.shard.mu.RLock()
	set := &j.ch.subs[w.idx]
	w.subs = append(w.subs[:0], set.small...)
	for c := range set.big {
		w.subs = append(w.subs, c)
	}
	j.shard.mu.RUnlock()
	return w.subs
}

// closing is a close queued behind a connection's other jobs.
type closing struct {
	code   int
	reason string
}

// closeConn writes what c has pending (this round's frames, or what
// coalescing keeps for a tick), then has the transport close it; it
// reports how many frames it wrote.
func (w *worker) closeConn(c *Conn, cl *closing) (n uint64) {
	if len(c.pending) > 0 {
		n = w.write(c, w.h.clock())
	}
	c.sink.Close(cl.code, cl.reason)
	return n
}

// write sends c's pending frames in one write, notes when, and reports
// how many (coalescing).
func (w *worker) write(c *Conn, now int32) uint64 {
	n := uint64(len(c.pending))
	_ = c.sink.Write(c.pending) // a failed write closes the connection in the transport
	c.sent()
	c.wrote = now
	return n
}

// sent empties c's pending frames after their write.
func (c *Conn) sent() {
	clear(c.pending)
	if cap(c.pending) > 4 {
		c.pending = nil // a burst's list is not kept
	} else {
		c.pending = c.pending[:0] // at most 4 slots (96 bytes) kept
	}
}

// keep leaves c's pending frames for the next tick, starting the ticks
// again if they had stopped: an interval after the last tick, and not
// before an interval after c's last write (the first publication after a
// quiet spell went out at once; the next one waits its turn), or now if
// that is past.
func (w *worker) keep(c *Conn) {
	if c.later {
		return
	}
	c.later = true
	if len(w.later) == 0 {
		now := time.Now()
		from := max(w.lastTick, c.wrote) // c.wrote is set: c was written since the last tick
		w.nextTick = w.h.epoch.Add(time.Duration(from-1)*time.Millisecond + w.interval)
		if w.nextTick.Before(now) {
			w.nextTick = now
		}
		w.timer.Reset(w.nextTick.Sub(now))
	}
	w.later = append(w.later, c)
}

// tick writes every connection kept for it.
func (w *worker) tick() {
	if len(w.later) == 0 {
		return
	}
	w.timer.Stop()
	now := w.h.clock()
	w.lastTick = now
	var n uint64
	for _, c := range w.later {
		c.later = false
		if len(c.pending) > 0 {
			n += w.write(c, now)
		}
	}
	clear(w.later)
	w.later = w.later[:0]
	w.h.deliveries.Add(n)
}

func (w *worker) push(c *Conn, b []byte) {
	if len(c.pending) == 0 {
		w.touched = append(w.touched, c)
	}
	c.pending = append(c.pending, b)
}
