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

// seen is the highest Seq delivered on one channel of a connection.
type seen struct {
	ch      string
	seq     int64
	resumed bool // drop frames with Seq <= seq
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
// before the replay. It reports whether the subscription is new.
func (h *Hub) Resume(c *Conn, channel string, reply []byte, load func() ([]*tidings.Message, error)) (bool, error) {
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
	c.w.enqueue(job{conn: c, release: &release{ch: channel, replay: replay}})
	return added, err
}

type release struct {
	ch     string
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
		if s > e.seq {
			e.seq = s
		}
	}
	w.push(c, f.Bytes(c.Kind))
}

func (w *worker) hold(c *Conn, ch string) {
	if c.heldFor(ch) == nil {
		c.held = append(c.held, held{ch: ch})
	}
	c.seenFor(ch).resumed = true
}

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
	for _, m := range r.replay {
		w.deliver(c, NewFrame(m))
	}
	for _, f := range frames {
		w.deliver(c, f)
	}
}
