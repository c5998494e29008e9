package hub

import "sync"

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
}

func newWorker(h *Hub, idx int) *worker {
	return &worker{h: h, idx: idx, wake: make(chan struct{}, 1), conns: map[*Conn]struct{}{}}
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

func (w *worker) enqueue(j job) {
	w.mu.Lock()
	w.queue = append(w.queue, j)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
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
				return
			}
			<-w.wake
			continue
		}
		batch, w.queue = w.queue, batch[:0]
		w.mu.Unlock()

		w.process(batch)
		clear(batch) // drop references to frames for the GC
	}
}

// process appends every job's bytes to the pending frames of the
// connections it concerns, then writes each touched connection once.
func (w *worker) process(batch []job) {
	for i := range batch {
		j := &batch[i]
		if j.conn != nil {
			switch {
			case j.hold != "":
				w.hold(j.conn, j.hold)
			case j.release != nil:
				w.release(j.conn, j.release)
			default:
				w.push(j.conn, j.raw)
			}
			continue
		}
		j.shard.mu.RLock()
		set := &j.ch.subs[w.idx]
		for _, c := range set.small {
			w.deliver(c, j.frame)
		}
		for c := range set.big {
			w.deliver(c, j.frame)
		}
		j.shard.mu.RUnlock()
	}
	var n uint64
	for _, c := range w.touched {
		n += uint64(len(c.pending))
		_ = c.sink.Write(c.pending) // a failed write closes the connection in the transport
		clear(c.pending)
		if cap(c.pending) > 4 {
			c.pending = nil // a burst's list is not kept
		} else {
			c.pending = c.pending[:0] // at most 4 slots (96 bytes) kept
		}
	}
	clear(w.touched)
	w.touched = w.touched[:0]
	w.h.deliveries.Add(n)
}

func (w *worker) push(c *Conn, b []byte) {
	if len(c.pending) == 0 {
		w.touched = append(w.touched, c)
	}
	c.pending = append(c.pending, b)
}
