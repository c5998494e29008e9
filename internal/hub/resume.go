package hub

import "github.com/tidings/tidings"

// Resume, the gap-free catch-up of one channel for one connection:
//
//  1. a hold job enters the connection's worker queue: from then on, live
//     frames of the channel for this connection are kept aside;
//  2. the connection is subscribed (live messages now flow, and are held);
//  3. load reads what was missed (store, history);
//  4. a release job delivers that replay, then the held frames.
//
// Every step passes the connection's worker queue, so nothing overtakes
// anything. The worker remembers the highest Seq it delivered per channel;
// once a channel is resumed, a frame whose Seq is not above it is dropped,
// so a message that is both in the replay and held (or was delivered live
// before the resume) arrives once. That rule is exact because messages of
// one channel are published in Seq order (tidings.Message).

// seen tracks what one channel delivered to a connection. Messages of a
// channel are published in Seq order, so what a connection received live
// is the contiguous range [first, seq] (it may have joined mid-stream, so
// first need not be 1); after a resume, everything up to seq.
type seen struct {
	ch      string
	first   int64 // first Seq delivered live (0: none yet)
	seq     int64 // highest Seq delivered
	resumed bool  // everything up to seq was delivered: drop Seq <= seq
}

// held is a channel whose live frames wait for a release.
type held struct {
	ch     string
	frames []*Frame
}

// Resume subscribes c to channel with a catch-up: see the comment above.
// load runs on the caller's goroutine; its messages must be in Seq order
// (a gap notice first, with Seq 0, when part of the history is gone).
// reply, when not nil, is sent right after the subscription is in place,
// before the replay. after is the client's cursor: nothing at or below it
// is delivered, unless the replay shows the channel's numbering started
// again (a message with a Seq at or below after). It reports whether the
// subscription is new.
func (h *Hub) Resume(c *Conn, channel string, after int64, reply []byte, load func() ([]*tidings.Message, error)) (bool, error) {
	c.w.enqueue(job{conn: c, hold: channel})
	added, err := h.Subscribe(c, channel)
	if err != nil {
		c.w.enqueue(job{conn: c, release: &release{ch: channel}})
		return false, err
	}
	if reply != nil {
		h.Send(c, reply)
	}
	replay, err := load()
	c.w.enqueue(job{conn: c, release: &release{ch: channel, after: after, replay: replay}})
	return added, err
}

type release struct {
	ch     string
	after  int64
	replay []*tidings.Message
}

func (c *Conn) seenFor(ch string) *seen {
	for i := range c.seen {
		if c.seen[i].ch == ch {
			return &c.seen[i]
		}
	}
	c.seen = append(c.seen, seen{ch: ch})
	return &c.seen[len(c.seen)-1]
}

func (c *Conn) heldFor(ch string) *held {
	for i := range c.held {
		if c.held[i].ch == ch {
			return &c.held[i]
		}
	}
	return nil
}

// deliver is the worker's path for a channel frame to one connection.
func (w *worker) deliver(c *Conn, f *Frame) {
	if c.held != nil {
		if hd := c.heldFor(f.Msg.Channel); hd != nil {
			hd.frames = append(hd.frames, f)
			return
		}
	}
	if s := f.Msg.Seq; s > 0 {
		e := c.seenFor(f.Msg.Channel)
		if e.resumed && s <= e.seq {
			return
		}
		if e.first == 0 {
			e.first = s
		}
		if s > e.seq {
			e.seq = s
		}
	}
	w.emit(c, f)
}

// emit appends f's bytes for c. A multi-channel SSE stream gets, before
// each event with a cursor, an id line of its own: the cursor of all its
// channels, so its Last-Event-ID resumes every one of them.
func (w *worker) emit(c *Conn, f *Frame) {
	if c.Kind == KindSSEMulti && f.Msg.Seq > 0 {
		w.push(c, c.cursorLine())
	}
	w.push(c, f.Bytes(c.Kind))
}

// cursorLine is "id: <opaque cursor>\n" of every channel c has a
// position on.
func (c *Conn) cursorLine() []byte {
	m := make(map[string]int64, len(c.seen))
	for _, e := range c.seen {
		m[e.ch] = e.seq
	}
	return []byte("id: " + tidings.EncodeCursor(m) + "\n")
}

func (w *worker) hold(c *Conn, ch string) {
	if c.heldFor(ch) == nil {
		c.held = append(c.held, held{ch: ch})
	}
}

// release sends the replay, then the held frames, each Seq at most once:
// nothing at or below the client's cursor, nothing it already got live,
// and from then on only Seqs above the highest delivered.
func (w *worker) release(c *Conn, r *release) {
	var frames []*Frame
	for i := range c.held {
		if c.held[i].ch == r.ch {
			frames = c.held[i].frames
			c.held = append(c.held[:i], c.held[i+1:]...)
			break
		}
	}
	if len(c.held) == 0 {
		c.held = nil
	}
	e := c.seenFor(r.ch)
	// What the connection already has live: [lo, hi].
	var lo, hi int64
	if e.resumed {
		lo, hi = 1, e.seq
	} else if e.first > 0 {
		lo, hi = e.first, e.seq
	}
	// The client has everything up to its cursor, unless the replay shows
	// the channel's numbering started again (a restart).
	floor := r.after
	for _, m := range r.replay {
		if m.Seq > 0 && m.Seq <= r.after {
			floor = 0
			break
		}
	}
	top := max(floor, hi)
	e.seq = top // the position cursor lines report from here on
	for _, m := range r.replay {
		if s := m.Seq; s > 0 {
			if s <= floor || (lo > 0 && s >= lo && s <= hi) {
				continue
			}
			top = max(top, s)
			e.seq = top
		}
		w.emit(c, NewFrame(m))
	}
	// Held frames came after the replay was read, in Seq order: anything
	// not above what is now delivered is a copy.
	for _, f := range frames {
		if s := f.Msg.Seq; s > 0 {
			if s <= top {
				continue
			}
			top = s
			e.seq = top
		}
		w.emit(c, f)
	}
	e.seq, e.first, e.resumed = top, 0, true
}
