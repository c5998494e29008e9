// Package history keeps a short, per-channel history of published events
// in memory, for the namespaces that ask for it (history_size,
// history_ttl), so a client that reconnects can catch up from an offset.
//
// Offsets start at 1 and increase by one per event of a channel. They are
// assigned under the channel's lock, and the event is handed to the
// publish function under that same lock, so events of one channel are
// published in offset order (the order resume relies on).
package history

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"time"

	"github.com/tidings/tidings"
)

// Policy is how much history a namespace keeps.
type Policy struct {
	Size int           // events kept per channel; 0 = none
	TTL  time.Duration // events older than this are dropped; 0 = no limit
}

// Memory is a single-node history.
type Memory struct {
	policies map[string]Policy // by namespace
	now      func() time.Time

	mu    sync.Mutex
	chans map[string]*ring
}

type entry struct {
	at time.Time
	m  *tidings.Message
}

type ring struct {
	mu     sync.Mutex
	next   int64   // offset of the next event
	events []entry // oldest first, at most Size
}

// New makes a history with a policy per namespace.
func New(policies map[string]Policy) *Memory {
	return &Memory{policies: policies, now: time.Now, chans: map[string]*ring{}}
}

// Keeps reports whether channel's namespace keeps history.
func (h *Memory) Keeps(channel string) bool {
	return h.policies[tidings.Namespace(channel)].Size > 0
}

func (h *Memory) ring(channel string, create bool) *ring {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.chans[channel]
	if r == nil && create {
		r = &ring{next: 1}
		h.chans[channel] = r
	}
	return r
}

// Publish assigns m the channel's next offset (Seq and ID), keeps it, and
// calls publish with it, all under the channel's lock. For a channel
// without history it only calls publish.
func (h *Memory) Publish(ctx context.Context, m *tidings.Message, publish func(context.Context, *tidings.Message) error) error {
	p := h.policies[tidings.Namespace(m.Channel)]
	if p.Size <= 0 {
		return publish(ctx, m)
	}
	r := h.ring(m.Channel, true)
	r.mu.Lock()
	defer r.mu.Unlock()
	m.Seq = r.next
	m.ID = strconv.FormatInt(m.Seq, 10)
	if err := publish(ctx, m); err != nil {
		return err // the offset is not used up: nobody saw it
	}
	r.next++
	now := h.now()
	r.events = append(r.events, entry{at: now, m: m})
	r.trim(p, now)
	return nil
}

func (r *ring) trim(p Policy, now time.Time) {
	drop := 0
	if over := len(r.events) - p.Size; over > 0 {
		drop = over
	}
	if p.TTL > 0 {
		for drop < len(r.events) && now.Sub(r.events[drop].at) > p.TTL {
			drop++
		}
	}
	if drop > 0 {
		clear(r.events[:drop])
		r.events = append(r.events[:0], r.events[drop:]...)
	}
}

// Replay returns the events of channel after offset after, oldest first,
// preceded by a gap notice when events after it are no longer kept (or
// the channel keeps no history).
func (h *Memory) Replay(_ context.Context, channel string, after int64) ([]*tidings.Message, error) {
	p := h.policies[tidings.Namespace(channel)]
	if p.Size <= 0 {
		return []*tidings.Message{Gap(channel, after, 0, "this channel keeps no history")}, nil
	}
	r := h.ring(channel, false)
	if r == nil {
		if after > 0 {
			return []*tidings.Message{Gap(channel, after, 0, "nothing kept for this channel")}, nil
		}
		return nil, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.trim(p, h.now())
	var out []*tidings.Message
	oldest := r.next // offset of the oldest kept event
	if len(r.events) > 0 {
		oldest = r.events[0].m.Seq
	}
	// since=0 asks for the oldest still kept: never a gap.
	if after > 0 && (after < oldest-1 || after >= r.next) {
		// Missed events are gone, or the cursor is from another life of
		// this channel (a restart): say so, then send what is kept.
		out = append(out, Gap(channel, after, oldest, "events after this cursor are no longer kept"))
		if after >= r.next {
			after = 0
		}
	}
	for _, e := range r.events {
		if e.m.Seq > after {
			out = append(out, e.m)
		}
	}
	return out, nil
}

// Last is the offset of the newest event of channel (0: none).
func (h *Memory) Last(channel string) int64 {
	r := h.ring(channel, false)
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.next - 1
}

// GapEvent is the event name of a gap notice.
const GapEvent = "gap"

// Gap makes the notice a client gets when part of what it missed is gone:
// {"since":"<its cursor>","first":"<oldest cursor still kept>","reason":…}
// ("first" is absent when nothing is kept).
func Gap(channel string, since, first int64, reason string) *tidings.Message {
	d := map[string]string{"since": strconv.FormatInt(since, 10), "reason": reason}
	if first > 0 {
		d["first"] = strconv.FormatInt(first, 10)
	}
	data, _ := json.Marshal(d)
	return &tidings.Message{Channel: channel, Event: GapEvent, Data: data}
}
