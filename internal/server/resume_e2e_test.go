package server

import (
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/tidings/tidings/internal/config"
)

// seqOf returns the seq of a notification event (0 for anything else).
func seqOf(t *testing.T, frame map[string]any) int {
	if frame["event"] != "notification" {
		return 0
	}
	n, err := strconv.Atoi(fmt.Sprint(frame["id"]))
	if err != nil {
		t.Fatalf("notification id %v", frame["id"])
	}
	return n
}

// Resubscribing with since while notifications are being published: every
// sequence number exactly once, in increasing order.
func TestResumeWhilePublishing(t *testing.T) {
	n := startNode(t)
	const total = 200
	early := n.connect("alice") // live from the start: the reference
	early.call(map[string]any{"op": "ping"})

	var wg sync.WaitGroup
	publish := func(from, to int) {
		defer wg.Done()
		for i := from; i < to; i++ {
			n.notify([]string{"alice"}, map[string]any{"title": fmt.Sprint("n", i)})
		}
	}
	// Four concurrent publishers: group commits and concurrent requests.
	wg.Add(4)
	for p := 0; p < 4; p++ {
		go publish(p*total/4, (p+1)*total/4)
	}

	// Wait until some have been published, then a second connection that
	// was live for a while resubscribes from 0 mid-stream.
	late := n.connect("alice")
	for seen := 0; seen < 30; {
		if seqOf(t, early.readJSON()) > 0 {
			seen++
		}
	}
	late.send(map[string]any{"op": "subscribe", "channel": "@user", "since": 0, "ref": "r"})

	got := []int{}
	gotReply := false
	for len(got) < total {
		f := late.readJSON()
		if f["ref"] == "r" {
			if f["result"] != true {
				t.Fatalf("subscribe since: %v", f)
			}
			gotReply = true
			continue
		}
		if s := seqOf(t, f); s > 0 {
			got = append(got, s)
		}
	}
	wg.Wait()
	if !gotReply {
		t.Fatal("no reply to subscribe")
	}
	// Live delivery before the resume plus the replay plus live after it:
	// each seq once, increasing. (The connection also received some seqs
	// live before it resubscribed; those are not repeated.)
	for i, s := range got {
		if i > 0 && s <= got[i-1] {
			t.Fatalf("seq %d after %d (position %d): %v", s, got[i-1], i, got)
		}
	}
	if got[0] != 1 || got[len(got)-1] != total {
		t.Fatalf("first %d last %d, want 1 and %d", got[0], got[len(got)-1], total)
	}
	// Nothing more: the next frame is a marker.
	n.do("POST", "/v1/mesh/publish", testAPIKey, map[string]string{"c": "user:alice", "d": "marker"})
	for {
		f := late.read()
		if f == "marker" {
			break
		}
		var m map[string]any
		_ = json.Unmarshal([]byte(f), &m)
		if s := seqOf(t, m); s > 0 {
			t.Fatalf("seq %d delivered twice", s)
		}
	}
}

// A client that was away resumes from its cursor: exactly what it missed.
func TestResumeFromCursor(t *testing.T) {
	n := startNode(t)
	for i := 0; i < 5; i++ {
		n.notify([]string{"bob"}, nil)
	}
	c := n.connect("bob")
	c.send(map[string]any{"op": "subscribe", "channel": "@user", "since": 3, "ref": 1})
	// Publishing runs just behind the commits: some of 4 and 5 may come
	// live before the reply. Each comes exactly once, and nothing at or
	// below the cursor.
	got := map[int]int{}
	replied := false
	for !replied || got[4]+got[5] < 2 {
		f := c.readJSON()
		if f["ref"] == 1.0 {
			replied = f["result"] == true
			if !replied {
				t.Fatalf("%v", f)
			}
			continue
		}
		got[seqOf(t, f)]++
	}
	if got[4] != 1 || got[5] != 1 || len(got) != 2 {
		t.Fatalf("seqs received: %v", got)
	}
	n.notify([]string{"bob"}, nil)
	if s := seqOf(t, c.readJSON()); s != 6 {
		t.Fatalf("live after replay: %d", s)
	}
}

func TestTopicHistoryAndGap(t *testing.T) {
	n := startNode(t, func(c *config.Config) {
		c.Namespaces = map[string]config.Namespace{"news": {HistorySize: 3}}
	})
	for i := 1; i <= 5; i++ {
		st, out := n.do("POST", "/v1/publish", testAPIKey, map[string]any{"channel": "news:1", "event": "story", "data": i})
		if st/100 != 2 {
			t.Fatalf("%d %s", st, out)
		}
	}
	c := n.connect("carol")
	// since 1: events 2 is gone → a gap notice, then 3, 4, 5.
	if r := c.call(map[string]any{"op": "subscribe", "channel": "news:1", "since": 1}); r["result"] != true {
		t.Fatalf("%v", r)
	}
	gap := c.readJSON()
	if gap["event"] != "gap" || gap["channel"] != "news:1" {
		t.Fatalf("want a gap notice, got %v", gap)
	}
	for _, want := range []string{"3", "4", "5"} {
		if f := c.readJSON(); f["event"] != "story" || f["id"] != want {
			t.Fatalf("got %v, want story %s", f, want)
		}
	}
	n.do("POST", "/v1/publish", testAPIKey, map[string]any{"channel": "news:1", "event": "story", "data": 6})
	if f := c.readJSON(); f["id"] != "6" {
		t.Fatalf("live: %v", f)
	}
	// A cursor within what is kept: no gap.
	d := n.connect("dave")
	d.call(map[string]any{"op": "subscribe", "channel": "news:1", "since": 4})
	for _, want := range []string{"5", "6"} {
		if f := d.readJSON(); f["id"] != want {
			t.Fatalf("dave got %v, want %s", f, want)
		}
	}
}
