package hub

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tidings/tidings"
)

// memSink records what the hub writes.
type memSink struct {
	mu     sync.Mutex
	frames [][]byte
	writes int
	sizes  []int // frames in each write
	closed bool
	before int // frames written before the close
	got    chan struct{}
}

func newMemSink() *memSink { return &memSink{got: make(chan struct{}, 1024)} }

func (s *memSink) Write(bufs [][]byte) error {
	s.mu.Lock()
	s.writes++
	s.sizes = append(s.sizes, len(bufs))
	for _, b := range bufs {
		s.frames = append(s.frames, append([]byte(nil), b...))
	}
	s.mu.Unlock()
	select {
	case s.got <- struct{}{}:
	default:
	}
	return nil
}

func (s *memSink) Close(int, string) {
	s.mu.Lock()
	if !s.closed {
		s.closed, s.before = true, len(s.frames)
	}
	s.mu.Unlock()
	select {
	case s.got <- struct{}{}:
	default:
	}
}

// waitClosed waits for the close and reports how many frames came before it.
func (s *memSink) waitClosed(t testing.TB) int {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		s.mu.Lock()
		closed, before := s.closed, s.before
		s.mu.Unlock()
		if closed {
			return before
		}
		select {
		case <-s.got:
		case <-deadline:
			t.Fatal("not closed")
		}
	}
}

func (s *memSink) count() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.frames) }

func (s *memSink) waitFor(t testing.TB, n int) [][]byte {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for s.count() < n {
		select {
		case <-s.got:
		case <-deadline:
			t.Fatalf("got %d frames, want %d", s.count(), n)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.frames...)
}

func startHub(t testing.TB, opt Options) *Hub {
	h := New(opt)
	h.Start()
	t.Cleanup(h.Stop)
	return h
}

func msg(ch string, i int) *tidings.Message {
	return &tidings.Message{Channel: ch, Event: "e", ID: fmt.Sprint(i), Data: json.RawMessage(fmt.Sprint(i))}
}

func TestPublishReachesSubscribersOnly(t *testing.T) {
	h := startHub(t, Options{Workers: 3})
	var subs []*memSink
	for i := 0; i < 10; i++ {
		s := newMemSink()
		c := h.Attach(KindWS, s)
		if _, err := h.Subscribe(c, "post:1"); err != nil {
			t.Fatal(err)
		}
		subs = append(subs, s)
	}
	other := newMemSink()
	oc := h.Attach(KindWS, other)
	if _, err := h.Subscribe(oc, "post:2"); err != nil {
		t.Fatal(err)
	}
	h.Publish(msg("post:1", 1))
	for _, s := range subs {
		f := s.waitFor(t, 1)
		want := WSText([]byte(`{"event":"e","channel":"post:1","id":"1","data":1}`))
		if !bytes.Equal(f[0], want) {
			t.Fatalf("frame %q, want %q", f[0], want)
		}
	}
	h.Publish(msg("post:2", 2)) // a marker: once it arrived, post:1 would have too
	other.waitFor(t, 1)
	if other.count() != 1 {
		t.Fatalf("non-subscriber got %d frames", other.count())
	}
}

func TestOrderPerConnectionAndBatching(t *testing.T) {
	h := startHub(t, Options{Workers: 2})
	s := newMemSink()
	c := h.Attach(KindWS, s)
	if _, err := h.Subscribe(c, "a"); err != nil {
		t.Fatal(err)
	}
	const n = 2000
	for i := 0; i < n; i++ {
		h.Publish(msg("a", i))
	}
	frames := s.waitFor(t, n)
	for i, f := range frames {
		want := WSText((&tidings.Message{Channel: "a", Event: "e", ID: fmt.Sprint(i), Data: json.RawMessage(fmt.Sprint(i))}).Envelope())
		if !bytes.Equal(f, want) {
			t.Fatalf("frame %d out of order: %q", i, f)
		}
	}
	s.mu.Lock()
	writes := s.writes
	s.mu.Unlock()
	t.Logf("%d frames in %d writes", n, writes)
	if writes > n {
		t.Fatalf("more writes (%d) than frames (%d)", writes, n)
	}
}

func TestSubscribeIdempotentAndUnsubscribe(t *testing.T) {
	h := startHub(t, Options{Workers: 1, MaxSubscriptions: 2})
	s := newMemSink()
	c := h.Attach(KindWS, s)
	if added, _ := h.Subscribe(c, "x"); !added {
		t.Fatal("first subscribe not added")
	}
	if added, _ := h.Subscribe(c, "x"); added {
		t.Fatal("second subscribe added again")
	}
	if _, err := h.Subscribe(c, "y"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Subscribe(c, "z"); err != ErrTooManySubs {
		t.Fatalf("third channel: %v, want ErrTooManySubs", err)
	}
	h.Publish(msg("x", 1))
	s.waitFor(t, 1)
	if !h.Unsubscribe(c, "x") {
		t.Fatal("unsubscribe reported not subscribed")
	}
	h.Publish(msg("x", 2))
	h.Publish(msg("y", 3))
	f := s.waitFor(t, 2)
	if len(f) != 2 || !bytes.Contains(f[1], []byte(`"id":"3"`)) {
		t.Fatalf("frames after unsubscribe: %q", f)
	}
	if st := h.Stats(); st.Channels != 1 {
		t.Fatalf("channels = %d, want 1", st.Channels)
	}
}

func TestDetachAndUsers(t *testing.T) {
	h := startHub(t, Options{MaxConnsPerUser: 2})
	a := h.Attach(KindWS, newMemSink())
	b := h.Attach(KindWS, newMemSink())
	c := h.Attach(KindWS, newMemSink())
	for _, x := range []*Conn{a, b} {
		if err := h.Authenticate(x, "u1", time.Time{}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.Subscribe(x, "user:u1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.Authenticate(c, "u1", time.Time{}); err != ErrTooManyConns {
		t.Fatalf("third connection: %v", err)
	}
	if err := h.Authenticate(a, "u2", time.Time{}); err == nil {
		t.Fatal("rebinding to another user allowed")
	}
	if !h.Online("u1") {
		t.Fatal("u1 not online")
	}
	h.Detach(a)
	h.Detach(a) // idempotent
	h.Detach(b)
	if h.Online("u1") {
		t.Fatal("u1 online after detach")
	}
	st := h.Stats()
	if st.Connections != 1 || st.Channels != 0 || st.Users != 0 {
		t.Fatalf("stats after detach: %+v", st)
	}
}

func TestSweepClosesIdleAndPings(t *testing.T) {
	h := startHub(t, Options{Workers: 1})
	idle, live := newMemSink(), newMemSink()
	ci := h.Attach(KindWS, idle)
	cl := h.Attach(KindWS, live)
	ci.lastSeen.Store(time.Now().Add(-time.Hour).UnixNano())
	cl.Touch()
	n, expired := h.Sweep(time.Now(), time.Minute, map[Kind][]byte{KindWS: WSPing})
	if n != 1 || expired != 0 {
		t.Fatalf("closed %d and %d, want 1 and 0", n, expired)
	}
	idle.waitClosed(t)
	if f := live.waitFor(t, 1); !bytes.Equal(f[0], WSPing) {
		t.Fatalf("live got %q, want a ping", f[0])
	}
}

// A connection whose credential has passed its end is closed with 1008 by
// the next sweep; one renewed before that (the same user authenticating
// again with a later end) stays, as does one with no end.
func TestSweepClosesExpired(t *testing.T) {
	h := startHub(t, Options{Workers: 1})
	now := time.Now()
	sinks := map[string]*codeSink{}
	conns := map[string]*Conn{}
	for name, exp := range map[string]time.Time{"expired": now.Add(-time.Second), "renewed": now.Add(-time.Second),
		"later": now.Add(time.Hour), "never": {}} {
		sinks[name] = &codeSink{memSink: newMemSink()}
		conns[name] = h.Attach(KindWS, sinks[name])
		if err := h.Authenticate(conns[name], "u-"+name, exp); err != nil {
			t.Fatal(err)
		}
		conns[name].Touch()
	}
	if err := h.Authenticate(conns["renewed"], "u-renewed", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if idled, expired := h.Sweep(now, time.Minute, nil); idled != 0 || expired != 1 {
		t.Fatalf("idle %d, expired %d; want 0 and 1", idled, expired)
	}
	sinks["expired"].waitClosed(t)
	if c := sinks["expired"].closeCode(); c != 1008 {
		t.Fatalf("close code %d, want 1008", c)
	}
	h.Flush()
	for _, name := range []string{"renewed", "later", "never"} {
		if sinks[name].closeCode() != 0 {
			t.Fatalf("%s closed", name)
		}
	}
}

// codeSink is a memSink that keeps the close code.
type codeSink struct {
	*memSink
	mu   sync.Mutex
	code int
}

func (s *codeSink) Close(code int, reason string) {
	s.mu.Lock()
	s.code = code
	s.mu.Unlock()
	s.memSink.Close(code, reason)
}

func (s *codeSink) closeCode() int { s.mu.Lock(); defer s.mu.Unlock(); return s.code }

// A close comes behind what was queued for the connection before it,
// even while the worker is still busy with earlier work; once the hub has
// stopped, a close is at once.
func TestCloseConnAfterQueuedFrames(t *testing.T) {
	h := startHub(t, Options{Workers: 1})
	slow := h.Attach(KindWS, &slowSink{*newMemSink()})
	s := newMemSink()
	c := h.Attach(KindWS, s)
	for range 4 {
		h.Send(slow, []byte("busy")) // the worker is inside these writes
	}
	h.Send(c, []byte("a"))
	h.Send(c, []byte("b"))
	h.CloseConn(c, 1000, "bye")
	if n := s.waitClosed(t); n != 2 {
		t.Fatalf("closed after %d frames, want 2", n)
	}
	h.Stop()
	late := newMemSink()
	h.CloseConn(h.Attach(KindWS, late), 1012, "")
	if n := late.waitClosed(t); n != 0 {
		t.Fatalf("late close after %d frames", n)
	}
}

func TestSSEEncoding(t *testing.T) {
	m := &tidings.Message{Channel: "c", Event: "notification", ID: "7", Data: json.RawMessage(`{"a":1}`)}
	got := string(NewFrame(m).Bytes(KindSSE))
	want := "id: 7\nevent: notification\ndata: {\"a\":1}\n\n"
	if got != want {
		t.Fatalf("got %q want %q", got, want)
	}
	raw := &tidings.Message{Channel: "c", Data: json.RawMessage("a\nb"), Raw: true}
	if got := string(EncodeSSE(raw, "")); got != "data: a\ndata: b\n\n" {
		t.Fatalf("raw: %q", got)
	}
	cr := &tidings.Message{Channel: "c", Data: json.RawMessage("a\rb\r\nc"), Raw: true}
	if got := string(EncodeSSE(cr, "")); got != "data: a\ndata: b\ndata: c\n\n" {
		t.Fatalf("raw with CR: %q", got)
	}
}

func TestWSFrameLengths(t *testing.T) {
	for _, n := range []int{0, 125, 126, 65535, 65536} {
		f := WSText(bytes.Repeat([]byte("x"), n))
		if f[0] != 0x81 {
			t.Fatalf("n=%d: first byte %x", n, f[0])
		}
		var hdr int
		switch {
		case n < 126:
			hdr = 2
		case n <= 65535:
			hdr = 4
		default:
			hdr = 10
		}
		if len(f) != hdr+n {
			t.Fatalf("n=%d: len %d, want %d", n, len(f), hdr+n)
		}
	}
}

func TestConnSetGrowsAndShrinks(t *testing.T) {
	var s connSet
	conns := make([]*Conn, 3*smallSet)
	for i := range conns {
		conns[i] = &Conn{ID: uint64(i)}
	}
	members := func() map[*Conn]bool {
		m := map[*Conn]bool{}
		for _, c := range s.small {
			m[c] = true
		}
		for c := range s.big {
			m[c] = true
		}
		return m
	}
	for i, c := range conns {
		if !s.add(c) || s.add(c) {
			t.Fatalf("add %d: want true once, then false", i)
		}
		if s.len() != i+1 || len(members()) != i+1 {
			t.Fatalf("after %d adds: len %d, members %d", i+1, s.len(), len(members()))
		}
	}
	if s.big == nil || s.small != nil {
		t.Fatal("a large set is not a map")
	}
	for i := 0; i < len(conns); i += 2 {
		if !s.remove(conns[i]) || s.remove(conns[i]) {
			t.Fatalf("remove %d: want true once, then false", i)
		}
	}
	m := members()
	for i, c := range conns {
		if m[c] != (i%2 == 1) {
			t.Fatalf("conn %d: member %v", i, m[c])
		}
	}

	// A small set: removal from the middle keeps the others.
	var small connSet
	for _, c := range conns[:4] {
		small.add(c)
	}
	if !small.remove(conns[1]) || small.len() != 3 || slices.Contains(small.small, conns[1]) {
		t.Fatalf("small set after remove: %v", small.small)
	}
}

// Subscribers past the small-set size on one worker all get a
// publication; unsubscribed ones do not.
func TestManySubscribersOnOneWorker(t *testing.T) {
	h := startHub(t, Options{Workers: 1})
	sinks := make([]*memSink, 2*smallSet+1)
	conns := make([]*Conn, len(sinks))
	for i := range sinks {
		sinks[i] = newMemSink()
		conns[i] = h.Attach(KindWS, sinks[i])
		if _, err := h.Subscribe(conns[i], "news"); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < len(conns); i += 3 {
		if !h.Unsubscribe(conns[i], "news") {
			t.Fatalf("unsubscribe %d", i)
		}
	}
	h.Publish(&tidings.Message{Channel: "news", Event: "e", Data: []byte(`1`)})
	h.Publish(&tidings.Message{Channel: "news", Event: "e", Data: []byte(`2`)})
	// A marker sent after the publications arrives after anything they
	// delivered to that connection.
	for i, c := range conns {
		if i%3 == 0 {
			h.Send(c, []byte("marker"))
		}
	}
	for i, s := range sinks {
		want := 2 // the two publications
		if i%3 == 0 {
			want = 1 // the marker alone
		}
		frames := s.waitFor(t, want)
		if i%3 == 0 && (len(frames) != 1 || string(frames[0]) != "marker") {
			t.Errorf("unsubscribed %d got %q", i, frames)
		}
		if len(frames) != want {
			t.Errorf("connection %d got %d frames, want %d", i, len(frames), want)
		}
	}
}
