package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tidings/tidings/internal/config"
)

// pollAnswer is a long-poll answer; Raw keeps each event's bytes.
type pollAnswer struct {
	Events []json.RawMessage `json:"events"`
	Cursor string            `json:"cursor"`
}

type pollEvent struct {
	Event   string          `json:"event"`
	Channel string          `json:"channel"`
	ID      string          `json:"id"`
	Data    json.RawMessage `json:"data"`
}

func (a pollAnswer) events(t testing.TB) []pollEvent {
	t.Helper()
	out := make([]pollEvent, len(a.Events))
	for i, raw := range a.Events {
		if err := json.Unmarshal(raw, &out[i]); err != nil {
			t.Fatalf("event %s: %v", raw, err)
		}
	}
	return out
}

// pollRequest sends GET <poll path>?query with a bearer token; it returns
// status and body, and an error instead of failing, so that it can run on
// any goroutine.
func (n *node) pollRequest(bearer, query string) (int, []byte, error) {
	u := n.base + n.cfg.PollPath
	if query != "" {
		u += "?" + query
	}
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		return 0, nil, err
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK && resp.Header.Get("Content-Type") != "application/json" {
		return 0, nil, fmt.Errorf("content type %q", resp.Header.Get("Content-Type"))
	}
	return resp.StatusCode, body, err
}

// poll answers a 200 poll or fails the test.
func (n *node) poll(user, query string) pollAnswer {
	n.t.Helper()
	st, body, err := n.pollRequest(n.token(user), query)
	if err != nil {
		n.t.Fatal(err)
	}
	if st != http.StatusOK {
		n.t.Fatalf("poll ?%s: %d %s", query, st, body)
	}
	var a pollAnswer
	if err := json.Unmarshal(body, &a); err != nil || a.Events == nil {
		n.t.Fatalf("poll answer %s: %v", body, err)
	}
	return a
}

// pollAsync runs a poll on another goroutine.
func (n *node) pollAsync(user, query string) <-chan pollResult {
	tok := n.token(user)
	ch := make(chan pollResult, 1)
	go func() {
		st, body, err := n.pollRequest(tok, query)
		ch <- pollResult{st, body, err, time.Now()}
	}()
	return ch
}

type pollResult struct {
	status int
	body   []byte
	err    error
	at     time.Time
}

func (r pollResult) answer(t testing.TB) pollAnswer {
	t.Helper()
	if r.err != nil || r.status != http.StatusOK {
		t.Fatalf("poll: %d %s %v", r.status, r.body, r.err)
	}
	var a pollAnswer
	if err := json.Unmarshal(r.body, &a); err != nil {
		t.Fatalf("poll answer %s: %v", r.body, err)
	}
	return a
}

func waitPoll(t testing.TB, ch <-chan pollResult) pollResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(15 * time.Second):
		t.Fatal("poll did not answer")
	}
	return pollResult{}
}

// pollsWaiting is the "poll" count of the admin stats.
func (n *node) pollsWaiting() int {
	n.t.Helper()
	st, out := n.do("GET", "/v1/admin/stats", testAdmin, nil)
	var s struct {
		Connections struct{ Poll int }
	}
	if err := json.Unmarshal(out, &s); st != 200 || err != nil {
		n.t.Fatalf("stats: %d %s", st, out)
	}
	return s.Connections.Poll
}

// awaitPolls waits until want polls are waiting.
func (n *node) awaitPolls(want int) {
	n.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for n.pollsWaiting() != want {
		if time.Now().After(deadline) {
			n.t.Fatalf("polls waiting: %d, want %d", n.pollsWaiting(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func pollCursor(m map[string]int64) string {
	b, _ := json.Marshal(m)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodePollCursor(t testing.TB, s string) map[string]int64 {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("cursor %q: %v", s, err)
	}
	var m map[string]int64
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("cursor %q = %s: %v", s, b, err)
	}
	return m
}

func equalCursors(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestPollAnswersAtOnceWhenDataWaits(t *testing.T) {
	n := startNode(t)
	ws := n.connect("alice")
	ws.call(map[string]any{"op": "ping"})
	n.notify([]string{"alice"}, nil)
	wsFrame := ws.read()

	start := time.Now()
	a := n.poll("alice", "since=0&timeout=5")
	if time.Since(start) > 4*time.Second {
		t.Fatalf("waited %v although data was there", time.Since(start))
	}
	if len(a.Events) != 1 || a.Cursor != "1" {
		t.Fatalf("answer %+v", a)
	}
	// The event is the server event of the WebSocket, byte for byte.
	if string(a.Events[0]) != wsFrame {
		t.Fatalf("poll event %s\nws frame   %s", a.Events[0], wsFrame)
	}
	ev := a.events(t)[0]
	if ev.Event != "notification" || ev.Channel != "user:alice" || ev.ID != "1" {
		t.Fatalf("event %+v", ev)
	}
	// The whole answer, as sent.
	st, body, err := n.pollRequest(n.token("alice"), "channel=@user&since=0&timeout=0")
	if err != nil || st != 200 || string(body) != `{"events":[`+wsFrame+`],"cursor":"1"}`+"\n" {
		t.Fatalf("answer: %d %q %v", st, body, err)
	}
}

func TestPollWaitsForALiveEvent(t *testing.T) {
	n := startNode(t)
	if a := n.poll("alice", "timeout=0"); a.Cursor != "0" || len(a.Events) != 0 {
		t.Fatalf("from now on an empty inbox: %+v", a)
	}
	res := n.pollAsync("alice", "since=0&timeout=10")
	n.awaitPolls(1)
	select {
	case r := <-res:
		t.Fatalf("answered before anything was published: %d %s", r.status, r.body)
	case <-time.After(200 * time.Millisecond):
	}
	sent := time.Now()
	ids := n.notify([]string{"alice"}, map[string]any{"title": "live"})
	r := waitPoll(t, res)
	if r.at.Before(sent) || r.at.Sub(sent) > 5*time.Second {
		t.Fatalf("answered %v after the publish", r.at.Sub(sent))
	}
	a := r.answer(t)
	evs := a.events(t)
	if len(evs) != 1 || evs[0].Event != "notification" || a.Cursor != "1" {
		t.Fatalf("answer %s", r.body)
	}
	var data struct{ ID, Title string }
	_ = json.Unmarshal(evs[0].Data, &data)
	if data.ID != ids[0] || data.Title != "live" {
		t.Fatalf("data %s", evs[0].Data)
	}
	n.awaitPolls(0)

	// A read event is delivered but does not move the cursor.
	res = n.pollAsync("alice", "since=1&timeout=10")
	n.awaitPolls(1)
	if st, out := n.do("POST", "/v1/me/read", n.token("alice"), map[string]any{"all": true}); st != 200 {
		t.Fatalf("read: %d %s", st, out)
	}
	a = waitPoll(t, res).answer(t)
	evs = a.events(t)
	if len(evs) != 1 || evs[0].Event != "read" || evs[0].ID != "" || a.Cursor != "1" {
		t.Fatalf("read answer %+v", a)
	}
	// So is a raw publication, as its event.
	res = n.pollAsync("alice", "since=1&timeout=10")
	n.awaitPolls(1)
	if st, out := n.do("POST", "/v1/mesh/publish", testAPIKey, map[string]string{"c": "user:alice", "d": "hello"}); st/100 != 2 {
		t.Fatalf("mesh publish: %d %s", st, out)
	}
	a = waitPoll(t, res).answer(t)
	if len(a.Events) != 1 || string(a.Events[0]) != `{"event":"message","channel":"user:alice","data":"hello"}` || a.Cursor != "1" {
		t.Fatalf("raw answer %+v", a)
	}
	n.awaitPolls(0)
}

func TestPollTimeoutKeepsTheCursor(t *testing.T) {
	n := startNode(t)
	n.notify([]string{"alice"}, nil)
	n.notify([]string{"alice"}, nil)
	start := time.Now()
	st, body, err := n.pollRequest(n.token("alice"), "since=2&timeout=1")
	if err != nil || st != 200 || string(body) != `{"events":[],"cursor":"2"}`+"\n" {
		t.Fatalf("idle answer: %d %q %v", st, body, err)
	}
	if d := time.Since(start); d < 900*time.Millisecond || d > 5*time.Second {
		t.Fatalf("timeout=1 answered after %v", d)
	}
	// From now: the newest cursor, so the next poll continues from there.
	if a := n.poll("alice", "timeout=1s"); a.Cursor != "2" || len(a.Events) != 0 {
		t.Fatalf("from now: %+v", a)
	}
	n.notify([]string{"alice"}, nil)
	if a := n.poll("alice", "since=2&timeout=5"); a.Cursor != "3" || len(a.events(t)) != 1 || a.events(t)[0].ID != "3" {
		t.Fatalf("next: %+v", a)
	}
	n.awaitPolls(0)
}

func TestPollTimeoutIsCapped(t *testing.T) {
	n := startNode(t, func(c *config.Config) { c.PollTimeoutMax = time.Second })
	start := time.Now()
	a := n.poll("alice", "timeout=30")
	if d := time.Since(start); d > 5*time.Second || a.Cursor != "0" {
		t.Fatalf("capped poll: %v %+v", d, a)
	}
}

// A client polling in a loop while notifications are published: each seq
// once, in order.
func TestPollLoopGetsEachOnce(t *testing.T) {
	n := startNode(t)
	const total = 10
	pubErr := make(chan error, 1)
	go func() {
		for i := 0; i < total; i++ {
			body, _ := json.Marshal(map[string]any{"users": []string{"alice"}, "title": fmt.Sprint("n", i)})
			req, _ := http.NewRequest("POST", n.base+"/v1/notifications", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+testAPIKey)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				pubErr <- err
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				pubErr <- fmt.Errorf("notify: %d", resp.StatusCode)
				return
			}
			time.Sleep(time.Duration(i%3) * 7 * time.Millisecond)
		}
		pubErr <- nil
	}()
	cursor := "0"
	var got []int
	polls := 0
	deadline := time.Now().Add(20 * time.Second)
	for len(got) < total && time.Now().Before(deadline) {
		a := n.poll("alice", "since="+cursor+"&timeout=5")
		polls++
		for _, ev := range a.events(t) {
			if ev.Event != "notification" {
				t.Fatalf("event %+v", ev)
			}
			s, _ := strconv.Atoi(ev.ID)
			got = append(got, s)
		}
		if len(a.Events) > 0 && a.Cursor != strconv.Itoa(got[len(got)-1]) {
			t.Fatalf("cursor %q after %v", a.Cursor, got)
		}
		cursor = a.Cursor
	}
	if err := <-pubErr; err != nil {
		t.Fatal(err)
	}
	// Nothing more: the last cursor is the end.
	if a := n.poll("alice", "since="+cursor+"&timeout=0"); len(a.Events) != 0 {
		t.Fatalf("left over: %+v", a)
	}
	if len(got) != total {
		t.Fatalf("got %v", got)
	}
	for i, s := range got {
		if s != i+1 {
			t.Fatalf("seqs %v", got)
		}
	}
	t.Logf("%d notifications in %d polls", total, polls)
	n.awaitPolls(0)
}

func TestPollSeveralChannelsWithHistory(t *testing.T) {
	n := startNode(t, func(c *config.Config) {
		c.Namespaces = map[string]config.Namespace{"news": {HistorySize: 3}}
	})
	publish := func(i int) {
		t.Helper()
		st, out := n.do("POST", "/v1/publish", testAPIKey, map[string]any{"channel": "news:1", "event": "story", "data": map[string]int{"n": i}})
		if st/100 != 2 {
			t.Fatalf("publish: %d %s", st, out)
		}
	}
	n.notify([]string{"alice"}, nil)
	publish(1)
	publish(2)

	q := "channel=news:1&channel=@user&since=" + pollCursor(map[string]int64{"news:1": 0, "user:alice": 0}) + "&timeout=5"
	a := n.poll("alice", q)
	var news, notes []string
	for _, ev := range a.events(t) {
		switch ev.Channel {
		case "news:1":
			if ev.Event != "story" {
				t.Fatalf("event %+v", ev)
			}
			news = append(news, ev.ID)
		case "user:alice":
			notes = append(notes, ev.ID)
		default:
			t.Fatalf("event %+v", ev)
		}
	}
	if strings.Join(news, ",") != "1,2" || strings.Join(notes, ",") != "1" {
		t.Fatalf("news %v notifications %v", news, notes)
	}
	want := map[string]int64{"news:1": 2, "user:alice": 1}
	if got := decodePollCursor(t, a.Cursor); !equalCursors(got, want) {
		t.Fatalf("cursor %v, want %v", got, want)
	}

	// Idle: same cursor, byte for byte.
	cur := a.Cursor
	if b := n.poll("alice", "channel=news:1&channel=@user&since="+cur+"&timeout=1"); b.Cursor != cur || len(b.Events) != 0 {
		t.Fatalf("idle: %+v", b)
	}

	// Live on one channel.
	res := n.pollAsync("alice", "channel=news:1&channel=@user&since="+cur+"&timeout=10")
	n.awaitPolls(1)
	publish(3)
	b := waitPoll(t, res).answer(t)
	if evs := b.events(t); len(evs) != 1 || evs[0].Channel != "news:1" || evs[0].ID != "3" {
		t.Fatalf("live: %+v", b)
	}
	want = map[string]int64{"news:1": 3, "user:alice": 1}
	if got := decodePollCursor(t, b.Cursor); !equalCursors(got, want) {
		t.Fatalf("cursor %v, want %v", got, want)
	}

	// From now on both: the newest cursors.
	if c := n.poll("alice", "channel=news:1&channel=@user&timeout=0"); !equalCursors(decodePollCursor(t, c.Cursor), want) || len(c.Events) != 0 {
		t.Fatalf("from now: %+v", c)
	}
	// A cursor naming one channel: the other starts from now.
	c := n.poll("alice", "channel=news:1&channel=@user&since="+pollCursor(map[string]int64{"news:1": 1})+"&timeout=5")
	if evs := c.events(t); len(evs) != 2 || evs[0].ID != "2" || evs[1].ID != "3" || !equalCursors(decodePollCursor(t, c.Cursor), want) {
		t.Fatalf("partial cursor: %+v", c)
	}
	// One channel: the decimal cursor.
	if d := n.poll("alice", "channel=news:1&since=2&timeout=5"); len(d.Events) != 1 || d.Cursor != "3" {
		t.Fatalf("one topic channel: %+v", d)
	}
	n.awaitPolls(0)
}

func TestPollGapNotice(t *testing.T) {
	n := startNode(t, func(c *config.Config) {
		c.Namespaces = map[string]config.Namespace{"news": {HistorySize: 3}}
	})
	for i := 1; i <= 5; i++ {
		st, out := n.do("POST", "/v1/publish", testAPIKey, map[string]any{"channel": "news:1", "event": "story", "data": i})
		if st/100 != 2 {
			t.Fatalf("publish: %d %s", st, out)
		}
	}
	// Kept: 3, 4, 5. A client at 1 missed 2.
	a := n.poll("alice", "channel=news:1&since=1&timeout=5")
	evs := a.events(t)
	if len(evs) != 4 || evs[0].Event != "gap" || evs[0].Channel != "news:1" || evs[0].ID != "" {
		t.Fatalf("answer %+v", a)
	}
	var gap struct{ Since, First, Reason string }
	if err := json.Unmarshal(evs[0].Data, &gap); err != nil || gap.Since != "1" || gap.First != "3" || gap.Reason == "" {
		t.Fatalf("gap data %s", evs[0].Data)
	}
	for i, ev := range evs[1:] {
		if ev.ID != strconv.Itoa(i+3) {
			t.Fatalf("after the gap: %+v", evs)
		}
	}
	if a.Cursor != "5" {
		t.Fatalf("cursor %q", a.Cursor)
	}
	// since=0: the oldest kept, no gap.
	if b := n.poll("alice", "channel=news:1&since=0&timeout=5"); len(b.Events) != 3 || b.events(t)[0].ID != "3" {
		t.Fatalf("since=0: %+v", b)
	}

	// A channel that keeps no history: a cursor gets one gap notice, and
	// the cursor it answers then waits quietly.
	b := n.poll("alice", "channel=post:1&since=7&timeout=5")
	if evs := b.events(t); len(evs) != 1 || evs[0].Event != "gap" || b.Cursor != "0" {
		t.Fatalf("no history: %+v", b)
	}
	start := time.Now()
	if c := n.poll("alice", "channel=post:1&since="+b.Cursor+"&timeout=1"); len(c.Events) != 0 || c.Cursor != "0" || time.Since(start) < 900*time.Millisecond {
		t.Fatalf("no history, next poll: %+v after %v", c, time.Since(start))
	}
	n.awaitPolls(0)
}

func TestPollErrors(t *testing.T) {
	n := startNode(t)
	tok := n.token("alice")
	check := func(name, bearer, query string, status, code int) {
		t.Helper()
		st, body, err := n.pollRequest(bearer, query)
		if err != nil {
			t.Fatal(err)
		}
		var e struct {
			Code int
			Msg  string
		}
		if st != status || json.Unmarshal(body, &e) != nil || e.Code != code || e.Msg == "" {
			t.Errorf("%s: %d %s, want %d code %d", name, st, body, status, code)
		}
	}
	check("no token", "", "", 401, 1)
	check("bad token", "not-a-token", "", 401, 1)
	check("another user's channel", tok, "channel=user:bob", 403, 3)
	check("another user's channel among others", tok, "channel=@user&channel=user:bob", 403, 3)
	check("invalid channel", tok, "channel="+url.QueryEscape("a b"), 400, 2)
	check("bad timeout", tok, "timeout=soon", 400, 2)
	check("negative timeout", tok, "timeout=-1", 400, 2)
	check("NaN timeout", tok, "timeout=NaN", 400, 2)
	check("bad since", tok, "since=abc", 400, 2)
	check("negative since", tok, "since=-1", 400, 2)
	check("decimal since for several channels", tok, "channel=@user&channel=news&since=3", 400, 2)
	check("malformed cursor", tok, "channel=@user&channel=news&since=eyJub3QiOg", 400, 2)
	check("negative seq in cursor", tok, "channel=@user&channel=news&since="+pollCursor(map[string]int64{"news": -1}), 400, 2)
	if st, _ := n.do("POST", "/v1/poll", tok, nil); st != 405 {
		t.Errorf("POST: %d", st)
	}

	// The token may come in the query or a cookie too.
	for name, mk := range map[string]func(*http.Request){
		"query":  func(r *http.Request) { r.URL.RawQuery += "&token=" + url.QueryEscape(tok) },
		"cookie": func(r *http.Request) { r.AddCookie(&http.Cookie{Name: n.cfg.TokenCookie, Value: tok}) },
	} {
		req, _ := http.NewRequest("GET", n.base+n.cfg.PollPath+"?timeout=0", nil)
		mk(req)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != `{"events":[],"cursor":"0"}`+"\n" {
			t.Errorf("token by %s: %d %s", name, resp.StatusCode, body)
		}
	}
	n.awaitPolls(0)
}

// A stopping node answers its waiting polls at once.
func TestPollAnsweredOnDrain(t *testing.T) {
	n := startNode(t)
	res := n.pollAsync("alice", "timeout=30")
	n.awaitPolls(1)
	start := time.Now()
	n.stop()
	r := waitPoll(t, res)
	if a := r.answer(t); len(a.Events) != 0 || a.Cursor != "0" {
		t.Fatalf("drained answer %+v", a)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Fatalf("drain took %v", d)
	}
}
