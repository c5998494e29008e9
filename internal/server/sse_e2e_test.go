package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/internal/config"
)

// sseBlock is one block of a Server-Sent Events stream (the lines up to a
// blank line), parsed as the EventSource algorithm reads fields.
type sseBlock struct {
	ID       string
	HasID    bool
	Event    string
	Data     string
	HasData  bool
	Retry    string
	Comments []string
}

// isEvent reports whether EventSource would dispatch the block.
func (b sseBlock) isEvent() bool { return b.HasData }

// sseStream is a test client reading one stream over a real HTTP client.
type sseStream struct {
	t      testing.TB
	resp   *http.Response
	blocks chan sseBlock
	done   chan struct{} // closed when the stream ends
	cancel context.CancelFunc
}

func (n *node) sseURL(query string) string {
	u := n.base + n.cfg.SSEPath
	if query != "" {
		u += "?" + query
	}
	return u
}

// sseRequest sends the GET and returns the response, headers read.
func (n *node) sseRequest(query string, hdr http.Header) (*http.Response, context.CancelFunc) {
	n.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.sseURL(query), nil)
	if err != nil {
		cancel()
		n.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		n.t.Fatal(err)
	}
	return resp, cancel
}

// openSSE opens a stream and fails the test unless it is a 200 event
// stream.
func (n *node) openSSE(query string, hdr http.Header) *sseStream {
	n.t.Helper()
	resp, cancel := n.sseRequest(query, hdr)
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		n.t.Fatalf("sse %s: %d %s", query, resp.StatusCode, body)
	}
	s := &sseStream{t: n.t, resp: resp, blocks: make(chan sseBlock, 1024), done: make(chan struct{}), cancel: cancel}
	go s.readLoop()
	n.t.Cleanup(s.close)
	return s
}

// openUser opens alice's kind of stream: a user's token in the query.
func (n *node) openUser(user, query string, hdr http.Header) *sseStream {
	n.t.Helper()
	q := "token=" + url.QueryEscape(n.token(user))
	if query != "" {
		q += "&" + query
	}
	return n.openSSE(q, hdr)
}

// refusedSSE sends the GET and returns the status and the JSON body of a
// refusal.
func (n *node) refusedSSE(query string, hdr http.Header) (int, map[string]any) {
	n.t.Helper()
	resp, cancel := n.sseRequest(query, hdr)
	defer cancel()
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		n.t.Fatalf("sse %s: accepted, want a refusal", query)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		n.t.Fatalf("refusal Content-Type %q", ct)
	}
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		n.t.Fatalf("refusal body: %v", err)
	}
	return resp.StatusCode, m
}

func (s *sseStream) close() {
	s.cancel()
	_ = s.resp.Body.Close()
	<-s.done
}

func (s *sseStream) readLoop() {
	defer close(s.done)
	br := bufio.NewReader(s.resp.Body)
	var b sseBlock
	some := false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if line == "" {
			if some {
				s.blocks <- b
			}
			b, some = sseBlock{}, false
			continue
		}
		some = true
		if rest, ok := strings.CutPrefix(line, ":"); ok {
			b.Comments = append(b.Comments, strings.TrimPrefix(rest, " "))
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			b.ID, b.HasID = value, true
		case "event":
			b.Event = value
		case "data":
			if b.HasData {
				b.Data += "\n"
			}
			b.Data += value
			b.HasData = true
		case "retry":
			b.Retry = value
		}
	}
}

// next returns the next block, failing after a few seconds.
func (s *sseStream) next() sseBlock {
	s.t.Helper()
	select {
	case b := <-s.blocks:
		return b
	case <-s.done:
		select {
		case b := <-s.blocks:
			return b
		default:
		}
		s.t.Fatal("stream ended")
	case <-time.After(5 * time.Second):
		s.t.Fatal("no block within 5s")
	}
	return sseBlock{}
}

// event returns the next block EventSource would dispatch, skipping
// comments (keep-alives) and retry-only blocks.
func (s *sseStream) event() sseBlock {
	s.t.Helper()
	for {
		if b := s.next(); b.isEvent() {
			return b
		}
	}
}

// start reads the two blocks every stream begins with.
func (s *sseStream) start() {
	s.t.Helper()
	if b := s.next(); b.Retry != "3000" || b.HasData {
		s.t.Fatalf("first block %+v, want retry: 3000", b)
	}
	if b := s.next(); len(b.Comments) != 1 || b.Comments[0] != "ok" || b.HasData {
		s.t.Fatalf("second block %+v, want the comment ok", b)
	}
}

// expectEnd waits for the server to close the stream.
func (s *sseStream) expectEnd() []sseBlock {
	s.t.Helper()
	var got []sseBlock
	timeout := time.After(10 * time.Second)
	for {
		select {
		case b := <-s.blocks:
			got = append(got, b)
		case <-s.done:
			for {
				select {
				case b := <-s.blocks:
					got = append(got, b)
				default:
					return got
				}
			}
		case <-timeout:
			s.t.Fatal("stream not closed")
		}
	}
}

func (n *node) publish(channel, event string, data any) {
	n.t.Helper()
	st, out := n.do("POST", "/v1/publish", testAPIKey, map[string]any{"channel": channel, "event": event, "data": data})
	if st/100 != 2 {
		n.t.Fatalf("publish: %d %s", st, out)
	}
}

func (n *node) sseCount() int64 {
	return n.srv.Stats().(map[string]any)["connections"].(map[string]int64)["sse"]
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The stream's bytes, from the response head on, exactly as documented.
func TestSSEWireFormat(t *testing.T) {
	n := startNode(t)
	conn, err := net.Dial("tcp", strings.TrimPrefix(n.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET %s?token=%s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n",
		n.cfg.SSEPath, url.QueryEscape(n.token("alice")), strings.TrimPrefix(n.base, "http://"))
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(conn)
	readBlock := func() string {
		t.Helper()
		var sb strings.Builder
		for !strings.HasSuffix(sb.String(), "\n\n") {
			b, err := br.ReadByte()
			if err != nil {
				t.Fatalf("read after %q: %v", sb.String(), err)
			}
			sb.WriteByte(b)
		}
		return sb.String()
	}
	head := "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n" +
		"Connection: keep-alive\r\nX-Accel-Buffering: no\r\n\r\nretry: 3000\n\n"
	if got := readBlock(); got != head {
		t.Fatalf("head:\n%q\nwant\n%q", got, head)
	}
	if got := readBlock(); got != ": ok\n\n" {
		t.Fatalf("after the head: %q", got)
	}
	n.notify([]string{"alice"}, nil)
	_, list := n.do("GET", "/v1/me/notifications", n.token("alice"), nil)
	var page struct{ Items []json.RawMessage }
	if err := json.Unmarshal(list, &page); err != nil || len(page.Items) != 1 {
		t.Fatalf("list: %s", list)
	}
	got := readBlock()
	const prefix = "id: 1\nevent: notification\ndata: "
	if !strings.HasPrefix(got, prefix) || strings.Count(got, "\n") != 4 {
		t.Fatalf("notification block %q", got)
	}
	var fromSSE, fromList map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSuffix(strings.TrimPrefix(got, prefix), "\n\n")), &fromSSE); err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(page.Items[0], &fromList)
	if !reflect.DeepEqual(fromSSE, fromList) || fromSSE["seq"] != 1.0 {
		t.Fatalf("data %v, want the stored notification %v", fromSSE, fromList)
	}
}

func TestSSENamedEvents(t *testing.T) {
	n := startNode(t)
	// The three token sources; no channel means @user.
	tok := n.token("alice")
	streams := []*sseStream{
		n.openUser("alice", "", nil),
		n.openSSE("", http.Header{"Authorization": {"Bearer " + tok}}),
		n.openSSE("", http.Header{"Cookie": {n.cfg.TokenCookie + "=" + tok}}),
	}
	for _, s := range streams {
		if s.resp.Header.Get("Content-Type") != "text/event-stream" || s.resp.Header.Get("Cache-Control") != "no-cache" ||
			s.resp.Header.Get("X-Accel-Buffering") != "no" || s.resp.ContentLength != -1 || len(s.resp.TransferEncoding) != 0 {
			t.Fatalf("head: %v %d %v", s.resp.Header, s.resp.ContentLength, s.resp.TransferEncoding)
		}
		s.start()
	}
	ids := n.notify([]string{"alice"}, map[string]any{"type": "comment.reply", "data": map[string]int{"post": 42}})
	for i, s := range streams {
		ev := s.event()
		var d map[string]any
		if err := json.Unmarshal([]byte(ev.Data), &d); err != nil {
			t.Fatal(err)
		}
		if ev.Event != "notification" || ev.ID != "1" || d["id"] != ids[0] || d["seq"] != 1.0 || d["type"] != "comment.reply" || d["user"] != "alice" {
			t.Fatalf("stream %d: %+v", i, ev)
		}
	}

	// A topic channel: the publisher's event name.
	inv := n.openUser("alice", "channel=invoice:42", nil)
	inv.start()
	n.publish("invoice:42", "invoice.ready", map[string]int{"id": 7})
	if ev := inv.event(); ev.Event != "invoice.ready" || ev.Data != `{"id":7}` || ev.HasID {
		t.Fatalf("topic event: %+v", ev)
	}
	// A raw publication: data only (EventSource's "message").
	n.do("POST", "/v1/mesh/publish", testAPIKey, map[string]string{"c": "invoice:42", "d": "hello\nworld"})
	if ev := inv.event(); ev.Event != "" || ev.Data != "hello\nworld" {
		t.Fatalf("raw publication: %+v", ev)
	}

	// Several channels: each id is the opaque cursor of all of them.
	multi := n.openUser("alice", "channel=@user&channel=invoice:42", nil)
	multi.start()
	n.notify([]string{"alice"}, nil)
	if ev := multi.event(); ev.Event != "notification" || fmt.Sprint(cursorOf(t, ev.ID)) != "map[invoice:42:0 user:alice:2]" {
		t.Fatalf("multi notification: %+v", ev)
	}
	n.publish("invoice:42", "invoice.ready", nil)
	if ev := multi.event(); ev.Event != "invoice.ready" || ev.Data != "null" || ev.HasID {
		t.Fatalf("multi topic event: %+v", ev)
	}
}

func TestSSEReadEvent(t *testing.T) {
	n := startNode(t)
	s := n.openUser("alice", "", nil)
	s.start()
	ids := n.notify([]string{"alice"}, nil)
	n.notify([]string{"alice"}, nil)
	s.event()
	s.event()
	st, out := n.do("POST", "/v1/me/read", n.token("alice"), map[string]any{"ids": ids})
	if st != 200 {
		t.Fatalf("read: %d %s", st, out)
	}
	ev := s.event()
	var d map[string]any
	_ = json.Unmarshal([]byte(ev.Data), &d)
	if ev.Event != "read" || ev.HasID || !reflect.DeepEqual(d, map[string]any{"ids": []any{ids[0]}, "unread": 1.0}) {
		t.Fatalf("read event: %+v", ev)
	}
	n.do("POST", "/v1/me/read", n.token("alice"), map[string]any{"all": true})
	if ev := s.event(); ev.Event != "read" || ev.Data != `{"all":true,"unread":0}` {
		t.Fatalf("read all: %+v", ev)
	}
}

// A client that drops and reconnects with its last id gets exactly what
// it missed, in order, then live events; the cursor may come as the
// header or either query parameter.
func TestSSEResume(t *testing.T) {
	for _, via := range []string{"header", "lastEventId", "last_event_id"} {
		t.Run(via, func(t *testing.T) {
			n := startNode(t)
			s := n.openUser("alice", "", nil)
			s.start()
			n.notify([]string{"alice"}, nil)
			last := s.event().ID
			if last != "1" {
				t.Fatalf("first id %q", last)
			}
			s.close()
			waitFor(t, "the stream to close", func() bool { return n.sseCount() == 0 })
			for range 3 {
				n.notify([]string{"alice"}, nil)
			}
			var hdr http.Header
			q := ""
			if via == "header" {
				hdr = http.Header{"Last-Event-ID": {last}}
			} else {
				q = via + "=" + last
			}
			s = n.openUser("alice", q, hdr)
			s.start()
			for want := 2; want <= 4; want++ {
				ev := s.event()
				var d map[string]any
				_ = json.Unmarshal([]byte(ev.Data), &d)
				if ev.Event != "notification" || ev.ID != strconv.Itoa(want) || d["seq"] != float64(want) {
					t.Fatalf("replay: got %+v, want seq %d", ev, want)
				}
			}
			n.notify([]string{"alice"}, nil)
			if ev := s.event(); ev.ID != "5" {
				t.Fatalf("live after replay: %+v", ev)
			}
		})
	}
}

// In a stream of several channels, every event's id is the cursor of all
// of them: a reconnect resumes every channel from where it was.
func TestSSEResumeMultiChannel(t *testing.T) {
	n := startNode(t, func(c *config.Config) {
		c.Namespaces = map[string]config.Namespace{"news": {HistorySize: 10}}
	})
	q := "channel=@user&channel=news:today"
	s := n.openUser("alice", q, nil)
	s.start()
	n.notify([]string{"alice"}, nil)
	if ev := s.event(); fmt.Sprint(cursorOf(t, ev.ID)) != "map[news:today:0 user:alice:1]" {
		t.Fatalf("%+v", ev)
	}
	n.publish("news:today", "headline", map[string]int{"n": 1})
	last := s.event()
	if last.Event != "headline" || fmt.Sprint(cursorOf(t, last.ID)) != "map[news:today:1 user:alice:1]" {
		t.Fatalf("%+v", last)
	}
	s.close()
	waitFor(t, "the stream to close", func() bool { return n.sseCount() == 0 })
	n.notify([]string{"alice"}, nil)
	n.notify([]string{"alice"}, nil)
	n.publish("news:today", "headline", map[string]int{"n": 2})

	// Both channels catch up: notifications 2 and 3, headline 2.
	s = n.openUser("alice", q, http.Header{"Last-Event-ID": {last.ID}})
	s.start()
	got := map[string]bool{}
	var id string
	for i := 0; i < 3; i++ {
		ev := s.event()
		got[ev.Event+":"+ev.Data] = true
		id = ev.ID
	}
	if len(got) != 3 {
		t.Fatalf("replay: %v", got)
	}
	if fmt.Sprint(cursorOf(t, id)) != "map[news:today:2 user:alice:3]" {
		t.Fatalf("cursor after the replay: %v", cursorOf(t, id))
	}
	n.publish("news:today", "headline", map[string]int{"n": 3})
	if ev := s.event(); ev.Data != `{"n":3}` || fmt.Sprint(cursorOf(t, ev.ID)) != "map[news:today:3 user:alice:3]" {
		t.Fatalf("live topic event: %+v", ev)
	}
}

func cursorOf(t *testing.T, id string) map[string]int64 {
	t.Helper()
	m, ok := tidings.DecodeCursor(id)
	if !ok {
		t.Fatalf("id %q is not a cursor", id)
	}
	return m
}

// A cursor older than what a topic channel keeps: a gap event, then what
// is kept, then live.
func TestSSEGap(t *testing.T) {
	n := startNode(t, func(c *config.Config) {
		c.Namespaces = map[string]config.Namespace{"news": {HistorySize: 2}}
	})
	for i := 1; i <= 5; i++ {
		n.publish("news:today", "headline", map[string]int{"n": i})
	}
	s := n.openUser("alice", "channel=news:today", http.Header{"Last-Event-ID": {"1"}})
	s.start()
	gap := s.event()
	var d map[string]any
	_ = json.Unmarshal([]byte(gap.Data), &d)
	if gap.Event != "gap" || gap.HasID || d["since"] != "1" || d["first"] != "4" {
		t.Fatalf("gap: %+v", gap)
	}
	for _, want := range []string{"4", "5"} {
		if ev := s.event(); ev.Event != "headline" || ev.ID != want || ev.Data != `{"n":`+want+`}` {
			t.Fatalf("got %+v, want id %s", ev, want)
		}
	}
	n.publish("news:today", "headline", map[string]int{"n": 6})
	if ev := s.event(); ev.ID != "6" {
		t.Fatalf("live: %+v", ev)
	}
}

// The head is written only once the subscriptions are in place: a publish
// right after the client read ": ok" arrives.
func TestSSEHeadAfterSubscribe(t *testing.T) {
	n := startNode(t)
	for i := range 20 {
		a, b := fmt.Sprintf("a:%d", i), fmt.Sprintf("b:%d", i)
		single := n.openUser("alice", "channel="+a, nil)
		single.start()
		n.publish(a, "e1", nil)
		if ev := single.event(); ev.Event != "e1" {
			t.Fatalf("round %d single: %+v", i, ev)
		}
		multi := n.openUser("alice", "channel="+a+"&channel="+b+"&channel=@user", nil)
		multi.start()
		n.publish(b, "e2", nil)
		if ev := multi.event(); ev.Event != "e2" {
			t.Fatalf("round %d multi: %+v", i, ev)
		}
		n.publish(a, "e3", nil)
		if ev := multi.event(); ev.Event != "e3" {
			t.Fatalf("round %d multi: %+v", i, ev)
		}
		single.close()
		multi.close()
	}
}

func TestSSERefusals(t *testing.T) {
	n := startNode(t, func(c *config.Config) {
		c.MaxSubscriptions = 2
		c.MaxConnsPerUser = 1
		c.AllowedOrigins = []string{"https://app.example"}
	})
	tok := "token=" + url.QueryEscape(n.token("alice"))
	cases := []struct {
		name   string
		query  string
		hdr    http.Header
		status int
		code   float64
	}{
		{"no token", "", nil, 401, 1},
		{"bad token", "token=garbage", nil, 401, 1},
		{"bad bearer", "", http.Header{"Authorization": {"Bearer nope"}}, 401, 1},
		{"another user's channel", tok + "&channel=user:other", nil, 403, 3},
		{"invalid channel", tok + "&channel=", nil, 400, 2},
		{"too many channels", tok + "&channel=a&channel=b&channel=c", nil, 400, 8},
		{"foreign origin", tok, http.Header{"Origin": {"https://evil.example"}}, 403, 3},
		{"malformed cursor", tok, http.Header{"Last-Event-ID": {"abc"}}, 400, 2},
		{"negative cursor", tok + "&lastEventId=-1", nil, 400, 2},
		{"bare cursor, several channels", tok + "&channel=a&channel=b&last_event_id=3", nil, 400, 2},
		{"not a cursor of this server", tok + "&channel=a&channel=b", http.Header{"Last-Event-ID": {"c@3"}}, 400, 2},
	}
	for _, c := range cases {
		st, body := n.refusedSSE(c.query, c.hdr)
		if st != c.status || body["code"] != c.code || body["msg"] == "" {
			t.Errorf("%s: %d %v, want %d code %v", c.name, st, body, c.status, c.code)
		}
	}
	// Duplicates collapse: @user and user:alice are one channel.
	s := n.openUser("alice", "channel=@user&channel=user:alice", nil)
	s.start()
	n.notify([]string{"alice"}, nil)
	if ev := s.event(); ev.ID != "1" {
		t.Fatalf("deduplicated stream: %+v", ev)
	}
	// Over max_conns_per_user.
	if st, body := n.refusedSSE(tok, nil); st != 429 || body["code"] != 6.0 {
		t.Fatalf("second stream of alice: %d %v", st, body)
	}
	// An allowed cross-origin EventSource may read the stream.
	o := n.openUser("bob", "", http.Header{"Origin": {"https://app.example"}})
	if o.resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		o.resp.Header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Fatalf("CORS headers: %v", o.resp.Header)
	}
	o.start()
	if n.sseCount() != 2 {
		t.Fatalf("refusals left connections: %d", n.sseCount())
	}
}

// Keep-alive comments arrive each ping interval, and a stream is not
// closed as idle although its client sends nothing.
func TestSSEKeepAlive(t *testing.T) {
	n := startNode(t, func(c *config.Config) {
		c.PingInterval = 100 * time.Millisecond
		c.IdleTimeout = 300 * time.Millisecond
	})
	s := n.openUser("alice", "", nil)
	s.start()
	deadline := time.Now().Add(time.Second)
	seen := 0
	for time.Now().Before(deadline) || seen == 0 {
		b := s.next()
		if len(b.Comments) != 1 || b.Comments[0] != "keep-alive" || b.HasData || b.HasID {
			t.Fatalf("unexpected block %+v", b)
		}
		seen++
	}
	if seen < 3 {
		t.Fatalf("%d keep-alives in over a second", seen)
	}
	n.notify([]string{"alice"}, nil)
	if ev := s.event(); ev.ID != "1" {
		t.Fatalf("after idle time: %+v", ev)
	}
	if n.sseCount() != 1 {
		t.Fatalf("sse count %d", n.sseCount())
	}
}

func TestSSEStatsCount(t *testing.T) {
	n := startNode(t)
	a := n.openUser("alice", "", nil)
	b := n.openUser("bob", "channel=@user&channel=news", nil)
	a.start()
	b.start()
	if got := n.sseCount(); got != 2 {
		t.Fatalf("sse count %d, want 2", got)
	}
	a.close()
	b.close()
	waitFor(t, "sse count 0", func() bool { return n.sseCount() == 0 })
	waitFor(t, "no hub connections", func() bool {
		return n.srv.Stats().(map[string]any)["connections"].(map[string]int64)["total"] == 0
	})
}

// On shutdown a stream gets a jittered retry delay, then is closed.
func TestSSEDrain(t *testing.T) {
	n := startNode(t)
	s := n.openUser("alice", "", nil)
	s.start()
	n.stop()
	blocks := s.expectEnd()
	if len(blocks) == 0 {
		t.Fatal("closed without a retry hint")
	}
	last := blocks[len(blocks)-1]
	ms, err := strconv.Atoi(last.Retry)
	if err != nil || ms < 500 || ms > 5000 || last.HasData {
		t.Fatalf("drain hint %+v", last)
	}
}
