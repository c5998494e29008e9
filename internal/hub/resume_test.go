package hub

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/tidings/tidings"
)

func seqMsg(ch string, seq int64) *tidings.Message {
	return &tidings.Message{Channel: ch, Event: "e", ID: fmt.Sprint(seq), Seq: seq, Data: json.RawMessage(fmt.Sprint(seq))}
}

func ids(t *testing.T, frames [][]byte) []string {
	t.Helper()
	var out []string
	for _, f := range frames {
		var ev struct{ ID string }
		if err := json.Unmarshal(f[2:], &ev); err != nil { // short frames: 2-byte header
			out = append(out, string(f[2:]))
			continue
		}
		out = append(out, ev.ID)
	}
	return out
}

// Live messages published while the replay loads are held, then follow
// the replay; each seq once; nothing at or below the cursor.
func TestResumeHoldsAndDedupes(t *testing.T) {
	h := startHub(t, Options{Workers: 1})
	s := newMemSink()
	c := h.Attach(KindWS, s)
	_, err := h.Resume(c, "ch", 2, WSText([]byte("ok")), func() ([]*tidings.Message, error) {
		// While "reading the store": live copies of 2 (at the cursor),
		// 4 (also in the replay) and 5 (after it) arrive.
		h.Publish(seqMsg("ch", 2))
		h.Publish(seqMsg("ch", 4))
		h.Publish(seqMsg("ch", 5))
		return []*tidings.Message{seqMsg("ch", 3), seqMsg("ch", 4)}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	h.Publish(seqMsg("ch", 6))
	got := ids(t, s.waitFor(t, 5))
	if fmt.Sprint(got) != "[ok 3 4 5 6]" {
		t.Fatalf("got %v, want [ok 3 4 5 6]", got)
	}
}

// A replay numbered at or below the cursor (the channel started again)
// is delivered, and so is what follows it.
func TestResumeAfterRestartedNumbering(t *testing.T) {
	h := startHub(t, Options{Workers: 1})
	s := newMemSink()
	c := h.Attach(KindWS, s)
	gap := &tidings.Message{Channel: "ch", Event: "gap", Data: json.RawMessage(`{}`)}
	_, err := h.Resume(c, "ch", 9, nil, func() ([]*tidings.Message, error) {
		return []*tidings.Message{gap, seqMsg("ch", 1), seqMsg("ch", 2)}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	h.Publish(seqMsg("ch", 3))
	frames := s.waitFor(t, 4)
	if !bytes.Contains(frames[0], []byte(`"gap"`)) || fmt.Sprint(ids(t, frames[1:])) != "[1 2 3]" {
		t.Fatalf("got %q", frames)
	}
}

// A connection that joined mid-stream got 5 live; resuming from 3 must
// still deliver 4 (published before it joined), and not 5 again.
func TestResumeAfterJoiningMidStream(t *testing.T) {
	h := startHub(t, Options{Workers: 1})
	s := newMemSink()
	c := h.Attach(KindWS, s)
	if _, err := h.Subscribe(c, "ch"); err != nil {
		t.Fatal(err)
	}
	h.Publish(seqMsg("ch", 5))
	s.waitFor(t, 1)
	_, err := h.Resume(c, "ch", 3, nil, func() ([]*tidings.Message, error) {
		return []*tidings.Message{seqMsg("ch", 4), seqMsg("ch", 5)}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	h.Publish(seqMsg("ch", 5)) // a late copy
	h.Publish(seqMsg("ch", 6))
	got := ids(t, s.waitFor(t, 3))
	if fmt.Sprint(got) != "[5 4 6]" {
		t.Fatalf("got %v, want [5 4 6]", got)
	}
}
