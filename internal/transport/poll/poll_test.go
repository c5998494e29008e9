package poll

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/internal/history"
	"github.com/tidings/tidings/internal/hub"
)

func TestCursorRoundTrip(t *testing.T) {
	m := map[string]int64{"user:1001": 17, "post:42": 0, "news": 3}
	text := encodeCursor(m)
	if strings.ContainsAny(text, "=+/") {
		t.Fatalf("not base64url without padding: %q", text)
	}
	if text != encodeCursor(map[string]int64{"news": 3, "post:42": 0, "user:1001": 17}) {
		t.Fatal("same positions, different text")
	}
	got, ok := decodeCursor(text)
	if !ok || len(got) != 3 || got["user:1001"] != 17 || got["news"] != 3 {
		t.Fatalf("decoded %v %v", got, ok)
	}
	for _, bad := range []string{"", "!!", "MTc", "bnVsbA", "WzFd", "eyJhIjotMX0", "eyJhIjoxLjV9", strings.Repeat("A", maxCursorLen+1)} {
		if m, ok := decodeCursor(bad); ok {
			t.Errorf("decodeCursor(%q) = %v", bad, m)
		}
	}
}

func TestParseSince(t *testing.T) {
	one := []string{"user:1"}
	two := []string{"user:1", "news"}
	if m, err := parseSince("", two); err != nil || m != nil {
		t.Fatalf("empty: %v %v", m, err)
	}
	if m, err := parseSince("0", one); err != nil || m["user:1"] != 0 || len(m) != 1 {
		t.Fatalf("0: %v %v", m, err)
	}
	if m, err := parseSince("42", one); err != nil || m["user:1"] != 42 {
		t.Fatalf("42: %v %v", m, err)
	}
	// One channel also takes the opaque form (a client that dropped a channel).
	c := encodeCursor(map[string]int64{"user:1": 5, "news": 9, "gone": 1})
	if m, err := parseSince(c, one); err != nil || len(m) != 1 || m["user:1"] != 5 {
		t.Fatalf("opaque for one: %v %v", m, err)
	}
	if m, err := parseSince(c, two); err != nil || len(m) != 2 || m["news"] != 9 {
		t.Fatalf("opaque for two: %v %v", m, err)
	}
	for _, tc := range []struct {
		text  string
		chans []string
	}{{"-1", one}, {"+1", one}, {"1.5", one}, {"abc", one}, {"99999999999999999999", one}, {"3", two}, {"x", two}} {
		_, err := parseSince(tc.text, tc.chans)
		if e := tidings.ErrorOf(err); err == nil || e.Code != tidings.CodeBadRequest {
			t.Errorf("parseSince(%q, %d channels) = %v", tc.text, len(tc.chans), err)
		}
	}
}

func TestParseTimeout(t *testing.T) {
	const def, max = 25 * time.Second, time.Minute
	for text, want := range map[string]time.Duration{
		"": def, "25s": 25 * time.Second, "25": 25 * time.Second, "1.5": 1500 * time.Millisecond,
		"0": 0, "0s": 0, "90": max, "2m": max, "1e300": max, "500ms": 500 * time.Millisecond,
	} {
		if got, err := parseTimeout(text, def, max); err != nil || got != want {
			t.Errorf("parseTimeout(%q) = %v, %v; want %v", text, got, err, want)
		}
	}
	for _, bad := range []string{"soon", "-1", "-1s", "NaN", "Inf", "-Inf", "1x"} {
		if d, err := parseTimeout(bad, def, max); err == nil {
			t.Errorf("parseTimeout(%q) = %v", bad, d)
		}
	}
	if got, _ := parseTimeout("", time.Hour, max); got != max {
		t.Errorf("default above the cap: %v", got)
	}
}

// fakeInbox keeps every message of each channel; all of it can be replayed.
type fakeInbox struct {
	mu   sync.Mutex
	msgs map[string][]*tidings.Message
}

func (f *fakeInbox) add(m *tidings.Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.msgs == nil {
		f.msgs = map[string][]*tidings.Message{}
	}
	f.msgs[m.Channel] = append(f.msgs[m.Channel], m)
}

func (f *fakeInbox) Replay(_ context.Context, ch string, after int64) ([]*tidings.Message, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*tidings.Message
	for _, m := range f.msgs[ch] {
		if m.Seq > after {
			out = append(out, m)
		}
	}
	return out, nil
}

func (f *fakeInbox) Cursor(_ context.Context, ch string) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ms := f.msgs[ch]; len(ms) > 0 {
		return ms[len(ms)-1].Seq, nil
	}
	return 0, nil
}

type fakeAuth struct{}

func (fakeAuth) Authenticate(_ context.Context, tok string) (tidings.Identity, error) {
	if tok == "bad" {
		return tidings.Identity{}, tidings.Errorf(tidings.CodeNotAuthenticated, "bad token")
	}
	return tidings.Identity{User: tok}, nil
}

type fakeRules struct{}

func (fakeRules) Allow(_ context.Context, id tidings.Identity, ch string) error {
	if strings.HasPrefix(ch, "user:") && ch != "user:"+id.User {
		return tidings.Errorf(tidings.CodeForbidden, "not allowed to subscribe to %s", ch)
	}
	return nil
}

type rig struct {
	t     *testing.T
	hub   *hub.Hub
	inbox *fakeInbox
	srv   *Server
}

func newRig(t *testing.T, mutate func(*Options)) *rig {
	h := hub.New(hub.Options{})
	h.Start()
	t.Cleanup(h.Stop)
	r := &rig{t: t, hub: h, inbox: &fakeInbox{}}
	opt := Options{Hub: h, Auth: fakeAuth{}, Rules: fakeRules{}, Inbox: r.inbox,
		Token: func(req *http.Request) string { return req.URL.Query().Get("token") }}
	if mutate != nil {
		mutate(&opt)
	}
	r.srv = New(opt)
	return r
}

// note stores and publishes notification seq on user:u.
func (r *rig) note(u string, seq int64, publish bool) *tidings.Message {
	m := &tidings.Message{Channel: "user:" + u, Event: "notification", ID: strconv.FormatInt(seq, 10), Seq: seq,
		Data: json.RawMessage(`{"seq":` + strconv.FormatInt(seq, 10) + `}`)}
	r.inbox.add(m)
	if publish {
		r.hub.Publish(m)
	}
	return m
}

type answer struct {
	status int
	events []map[string]any
	cursor string
	took   time.Duration
	body   string
}

func (r *rig) get(query string) answer {
	req := httptest.NewRequest("GET", "/v1/poll?"+query, nil)
	rec := httptest.NewRecorder()
	start := time.Now()
	r.srv.ServeHTTP(rec, req)
	a := answer{status: rec.Code, took: time.Since(start), body: rec.Body.String()}
	if rec.Code == 200 {
		var v struct {
			Events []map[string]any
			Cursor string
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
			r.t.Errorf("answer %q: %v", rec.Body.String(), err)
		}
		a.events, a.cursor = v.Events, v.Cursor
	}
	return a
}

func (r *rig) async(query string) <-chan answer {
	ch := make(chan answer, 1)
	go func() { ch <- r.get(query) }()
	return ch
}

// listening waits until n channels have a subscriber.
func (r *rig) listening(n int) {
	r.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for r.hub.Stats().Channels != n {
		if time.Now().After(deadline) {
			r.t.Fatalf("channels listened to: %d, want %d", r.hub.Stats().Channels, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func recv(t *testing.T, ch <-chan answer) answer {
	t.Helper()
	select {
	case a := <-ch:
		return a
	case <-time.After(10 * time.Second):
		t.Fatal("no answer")
	}
	return answer{}
}

func ids(a answer) string {
	var out []string
	for _, e := range a.events {
		id, _ := e["id"].(string)
		out = append(out, id)
	}
	return strings.Join(out, ",")
}

// A live message that reaches the hub after an earlier answer took it from
// the replay is not answered again.
func TestLateLiveDuplicateIsDropped(t *testing.T) {
	r := newRig(t, nil)
	m1 := r.note("a", 1, false)
	m2 := r.note("a", 2, false)
	if a := r.get("token=a&since=0&timeout=5"); ids(a) != "1,2" || a.cursor != "2" {
		t.Fatalf("first: %+v", a)
	}
	res := r.async("token=a&since=2&timeout=5")
	r.listening(1)
	r.hub.Publish(m1)    // late: already answered
	r.hub.Publish(m2)    // late too
	r.note("a", 3, true) // new
	if a := recv(t, res); ids(a) != "3" || a.cursor != "3" {
		t.Fatalf("second: %+v", a)
	}
	if r.srv.Count() != 0 || r.hub.Stats().Connections != 0 {
		t.Fatalf("left behind: %d polls, %d connections", r.srv.Count(), r.hub.Stats().Connections)
	}
}

func TestLingerBatchesAndIsBounded(t *testing.T) {
	r := newRig(t, func(o *Options) { o.Linger = 300 * time.Millisecond; o.MaxBatch = 5 })
	res := r.async("token=a&timeout=10")
	r.listening(1)
	r.note("a", 1, true)
	time.Sleep(50 * time.Millisecond)
	r.note("a", 2, true)
	a := recv(t, res)
	if ids(a) != "1,2" || a.cursor != "2" {
		t.Fatalf("lingered answer: %+v", a)
	}

	// A full batch answers without waiting for the linger to end.
	r = newRig(t, func(o *Options) { o.Linger = 5 * time.Second; o.MaxBatch = 5 })
	res = r.async("token=a&timeout=10")
	r.listening(1)
	for i := int64(1); i <= 5; i++ {
		r.note("a", i, true)
	}
	a = recv(t, res)
	if ids(a) != "1,2,3,4,5" || a.took > 4*time.Second {
		t.Fatalf("full batch: %+v", a)
	}
}

// The hub's idle sweep does not end a poll: its own timeout does.
func TestIdleSweepIgnored(t *testing.T) {
	r := newRig(t, nil)
	res := r.async("token=a&timeout=10")
	r.listening(1)
	r.hub.Sweep(time.Now().Add(time.Hour), time.Second, nil) // may or may not skip the poll
	r.hub.ForEach(func(c *hub.Conn) { r.hub.CloseConn(c, 1001, "idle timeout") })
	select {
	case a := <-res:
		t.Fatalf("answered on the sweep: %+v", a)
	case <-time.After(100 * time.Millisecond):
	}
	r.note("a", 1, true)
	if a := recv(t, res); ids(a) != "1" {
		t.Fatalf("answer %+v", a)
	}
}

func TestDrainAnswersAndRefuses(t *testing.T) {
	r := newRig(t, nil)
	r.note("a", 4, false)
	res := r.async("token=a&timeout=10")
	r.listening(1)
	r.srv.Drain()
	if a := recv(t, res); a.status != 200 || len(a.events) != 0 || a.cursor != "4" || a.took > 5*time.Second {
		t.Fatalf("drained: %+v", a)
	}
	if a := r.get("token=a&timeout=10"); a.status != 503 || !strings.Contains(a.body, `"code":11`) {
		t.Fatalf("while draining: %+v", a)
	}
}

func TestClientGoneEndsTheWait(t *testing.T) {
	r := newRig(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		req := httptest.NewRequest("GET", "/v1/poll?token=a&timeout=30", nil).WithContext(ctx)
		r.srv.ServeHTTP(httptest.NewRecorder(), req)
	}()
	r.listening(1)
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the wait outlived the client")
	}
	if r.srv.Count() != 0 || r.hub.Stats().Connections != 0 || r.hub.Stats().Channels != 0 {
		t.Fatalf("left behind: %d polls, %+v", r.srv.Count(), r.hub.Stats())
	}
}

// A gap notice with nothing after it moves the cursor to just before the
// oldest kept, so the next poll does not get the same notice again.
func TestGapWithNothingKept(t *testing.T) {
	r := newRig(t, nil)
	inbox := &gapInbox{first: 8}
	r.srv = New(Options{Hub: r.hub, Auth: fakeAuth{}, Rules: fakeRules{}, Inbox: inbox,
		Token: func(req *http.Request) string { return req.URL.Query().Get("token") }})
	a := r.get("token=a&channel=news&since=2&timeout=5")
	if len(a.events) != 1 || a.events[0]["event"] != "gap" || a.cursor != "7" {
		t.Fatalf("gap: %+v", a)
	}
	if a := r.get("token=a&channel=news&since=7&timeout=0"); len(a.events) != 0 || a.cursor != "7" {
		t.Fatalf("after the gap: %+v", a)
	}
}

type gapInbox struct{ first int64 }

func (g *gapInbox) Replay(_ context.Context, ch string, after int64) ([]*tidings.Message, error) {
	if after < g.first-1 {
		return []*tidings.Message{history.Gap(ch, after, g.first, "gone")}, nil
	}
	return nil, nil
}

func (g *gapInbox) Cursor(context.Context, string) (int64, error) { return g.first - 1, nil }

func TestRequestErrors(t *testing.T) {
	r := newRig(t, func(o *Options) { o.MaxChannels = 2 })
	for q, status := range map[string]int{
		"":                                      401,
		"token=bad":                             401,
		"token=a&channel=user:b":                403,
		"token=a&timeout=x":                     400,
		"token=a&channel=a&channel=b&channel=c": 400,
		"token=a&channel=a&channel=b&since=1":   400,
	} {
		if a := r.get(q); a.status != status || !strings.HasPrefix(a.body, `{"code":`) {
			t.Errorf("?%s: %d %s, want %d", q, a.status, a.body, status)
		}
	}
	// Duplicates and the alias count once.
	if a := r.get("token=a&channel=@user&channel=user:a&channel=@user&timeout=0"); a.status != 200 || a.cursor != "0" {
		t.Fatalf("one channel named three ways: %+v", a)
	}
}
