package history

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/tidings/tidings"
)

func publishN(t *testing.T, h *Memory, ch string, n int) []*tidings.Message {
	t.Helper()
	var out []*tidings.Message
	for i := 0; i < n; i++ {
		m := &tidings.Message{Channel: ch, Event: "e", Data: json.RawMessage(`1`)}
		if err := h.Publish(context.Background(), m, func(context.Context, *tidings.Message) error { return nil }); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func seqs(ms []*tidings.Message) (gap bool, s []int64) {
	for _, m := range ms {
		if m.Event == GapEvent {
			gap = true
			continue
		}
		s = append(s, m.Seq)
	}
	return gap, s
}

func TestReplayAndGap(t *testing.T) {
	h := New(map[string]Policy{"news": {Size: 3}})
	ms := publishN(t, h, "news:1", 5)
	if ms[0].Seq != 1 || ms[4].ID != "5" {
		t.Fatalf("offsets: %d %q", ms[0].Seq, ms[4].ID)
	}
	cases := []struct {
		after int64
		gap   bool
		want  []int64
	}{
		{0, false, []int64{3, 4, 5}}, // oldest still kept
		{1, true, []int64{3, 4, 5}},  // 2 is gone
		{2, false, []int64{3, 4, 5}}, // nothing missed is gone
		{4, false, []int64{5}},
		{5, false, nil},
		{9, true, []int64{3, 4, 5}}, // a cursor from another life
	}
	for _, c := range cases {
		got, _ := h.Replay(context.Background(), "news:1", c.after)
		gap, s := seqs(got)
		if gap != c.gap || len(s) != len(c.want) {
			t.Fatalf("after %d: gap %v seqs %v, want %v %v", c.after, gap, s, c.gap, c.want)
		}
		for i := range s {
			if s[i] != c.want[i] {
				t.Fatalf("after %d: %v", c.after, s)
			}
		}
	}
	if h.Last("news:1") != 5 {
		t.Fatal("last")
	}
}

func TestNoHistoryAndTTL(t *testing.T) {
	h := New(map[string]Policy{"news": {Size: 10, TTL: time.Minute}})
	now := time.Now()
	h.now = func() time.Time { return now }
	publishN(t, h, "news:1", 2)
	now = now.Add(2 * time.Minute)
	publishN(t, h, "news:1", 1)
	got, _ := h.Replay(context.Background(), "news:1", 1)
	if gap, s := seqs(got); !gap || len(s) != 1 || s[0] != 3 {
		t.Fatalf("after ttl: %v %v", gap, s)
	}
	m := &tidings.Message{Channel: "chat:1"}
	if err := h.Publish(context.Background(), m, func(context.Context, *tidings.Message) error { return nil }); err != nil || m.Seq != 0 {
		t.Fatalf("no-history channel got seq %d", m.Seq)
	}
	got, _ = h.Replay(context.Background(), "chat:1", 0)
	if gap, _ := seqs(got); !gap {
		t.Fatal("no gap notice for a channel without history")
	}
}
