package hub

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"
)

func (s *memSink) writeSizes() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sizes)
}

func hasID(frame []byte, id int) bool {
	return bytes.Contains(frame, fmt.Appendf(nil, `"id":"%d"`, id))
}

func frameData(t *testing.T, frames [][]byte) []string {
	t.Helper()
	var out []string
	for _, f := range frames {
		out = append(out, string(f))
	}
	return out
}

// With a write interval far longer than the test, a connection gets its
// first publication at once, keeps the next ones, and hands them over
// with the next reply (in order, one write); Stop writes what is left.
func TestCoalesceKeepsUntilReplyOrStop(t *testing.T) {
	h := New(Options{Workers: 1, MinWriteInterval: time.Hour})
	h.Start()
	s := newMemSink()
	c := h.Attach(KindWS, s)
	if _, err := h.Subscribe(c, "room:1"); err != nil {
		t.Fatal(err)
	}
	h.Publish(msg("room:1", 1))
	s.waitFor(t, 1) // the first one after a quiet spell: at once
	h.Publish(msg("room:1", 2))
	h.Publish(msg("room:1", 3))
	h.Send(c, []byte("reply"))
	got := s.waitFor(t, 4)
	if sizes := s.writeSizes(); !slices.Equal(sizes, []int{1, 3}) {
		t.Fatalf("frames per write %v, want [1 3]: the reply takes the kept frames along", sizes)
	}
	if string(got[3]) != "reply" || !hasID(got[1], 2) || !hasID(got[2], 3) {
		t.Fatalf("order: %q", frameData(t, got))
	}
	h.Publish(msg("room:1", 4))
	h.Stop()
	got = s.waitFor(t, 5)
	if !hasID(got[4], 4) {
		t.Fatalf("Stop did not write the kept frame: %q", frameData(t, got))
	}
}

// slowSink takes a while over every write.
type slowSink struct{ memSink }

func (s *slowSink) Write(bufs [][]byte) error {
	time.Sleep(5 * time.Millisecond)
	return s.memSink.Write(bufs)
}

// Under a steady stream, frames are coalesced into fewer writes, none is
// lost or reordered, and the ticks come even though the worker never runs
// out of work (a slow connection's replies keep it busy).
func TestCoalesceUnderSteadyStream(t *testing.T) {
	const interval = 20 * time.Millisecond
	h := startHub(t, Options{Workers: 1, MinWriteInterval: interval})
	s := newMemSink()
	c := h.Attach(KindWS, s)
	if _, err := h.Subscribe(c, "room:1"); err != nil {
		t.Fatal(err)
	}
	slow := h.Attach(KindWS, &slowSink{*newMemSink()})
	start := time.Now()
	n := 0
	for ; time.Since(start) < 10*interval || len(s.writeSizes()) < 3; n++ {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("%d writes in 10 s of publishing", len(s.writeSizes()))
		}
		h.Publish(msg("room:1", n))
		h.Send(slow, []byte("reply")) // urgent: written every round
		time.Sleep(50 * time.Microsecond)
	}
	got := s.waitFor(t, n)
	for i, f := range got {
		if !hasID(f, i) {
			t.Fatalf("frame %d is %q", i, f)
		}
	}
	sizes := s.writeSizes()
	if len(sizes) >= n {
		t.Fatalf("%d frames in %d writes: nothing coalesced", n, len(sizes))
	}
	t.Logf("%d frames in %d writes", n, len(sizes))
}

// Flush writes what is kept and turns coalescing off (a drain).
func TestFlushWritesKeptAndStopsKeeping(t *testing.T) {
	h := startHub(t, Options{Workers: 2, MinWriteInterval: time.Hour})
	s := newMemSink()
	c := h.Attach(KindWS, s)
	if _, err := h.Subscribe(c, "room:1"); err != nil {
		t.Fatal(err)
	}
	h.Publish(msg("room:1", 1))
	s.waitFor(t, 1)
	h.Publish(msg("room:1", 2)) // kept for an hour
	h.Flush()
	if got := s.count(); got != 2 {
		t.Fatalf("%d frames written after Flush, want 2", got)
	}
	h.Publish(msg("room:1", 3))
	h.Publish(msg("room:1", 4))
	got := s.waitFor(t, 4)
	if !hasID(got[2], 3) || !hasID(got[3], 4) {
		t.Fatalf("after Flush: %q", frameData(t, got))
	}
	h.Stop()
	h.Flush() // after Stop: returns at once
}
