package server

import (
	"encoding/json"
	"fmt"
	"net/url"
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

// A client reconnects with its cursor (since=0 in the upgrade) while
// notifications are being published: every sequence number exactly once,
// in increasing order.
func TestResumeWhilePublishing(t *testing.T) {
	n := startNode(t)
	const total = 200
	early := n.connect("alice") // live from the start: tells when to reconnect
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
	for seen := 0; seen < 30; {
		if seqOf(t, early.readJSON()) > 0 {
			seen++
		}
	}
	late, _, err := n.dial("since=0&token="+url.QueryEscape(n.token("alice")), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := readSeqs(t, late, total)
	wg.Wait()
	for i, s := range got {
		if s != i+1 {
			t.Fatalf("position %d: seq %d (want %d): %v", i, s, i+1, got)
		}
	}
	expectNoMoreSeqs(t, n, late)
}

// A connection that was live for a while resubscribes from 0 mid-stream:
// it gets every sequence number exactly once (those it missed before it
// went live come after the ones it already had).
func TestResubscribeWhilePublishing(t *testing.T) {
	n := startNode(t)
	const total = 120
	c := n.connect("alice")
	c.call(map[string]any{"op": "ping"})
	var wg sync.WaitGroup
	wg.Add(3)
	for p := 0; p < 3; p++ {
		go func(from, to int) {
			defer wg.Done()
			for i := from; i < to; i++ {
				n.notify([]string{"alice"}, nil)
			}
		}(p*total/3, (p+1)*total/3)
	}
	count := map[int]int{}
	for len(count) < 20 {
		if s := seqOf(t, c.readJSON()); s > 0 {
			count[s]++
		}
	}
	c.send(map[string]any{"op": "subscribe", "channel": "@user", "since": 0})
	for len(count) < total {
		f := c.readJSON()
		if s := seqOf(t, f); s > 0 {
			if count[s]++; count[s] > 1 {
				t.Fatalf("seq %d twice", s)
			}
		}
	}
	wg.Wait()
	expectNoMoreSeqs(t, n, c)
}

func readSeqs(t *testing.T, c *wsClient, total int) []int {
	t.Helper()
	var got []int
	for len(got) < total {
		if s := seqOf(t, c.readJSON()); s > 0 {
			got = append(got, s)
		}
	}
	return got
}

// expectNoMoreSeqs: the next frame after a marker is the marker itself.
func expectNoMoreSeqs(t *testing.T, n *node, c *wsClient) {
	t.Helper()
	n.do("POST", "/v1/mesh/publish", testAPIKey, map[string]string{"c": "user:alice", "d": "marker"})
	for {
		f := c.read()
		if f == "marker" {
			return
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
