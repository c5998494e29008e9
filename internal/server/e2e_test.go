package server

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/tidings/tidings/internal/config"
)

// The seed-003 message-center transcript, byte for byte.
func TestSeed003Transcript(t *testing.T) {
	n := startNode(t)
	c, _, err := n.dial("", nil)
	if err != nil {
		t.Fatal(err)
	}
	c.sendText(`{"op":"auth","token":"` + n.token("1001") + `"}`)
	if got := c.read(); got != `{"result":true}` {
		t.Fatalf("auth: %s", got)
	}
	c.sendText(`{"op":"subscribe","channel":"@user"}`)
	if got := c.read(); got != `{"result":true}` {
		t.Fatalf("subscribe: %s", got)
	}
	d := `{"event":"@user","data":{"uid":1001,"msg":"Hello,World!"}}`
	st, out := n.do("POST", "/v1/mesh/publish", testAPIKey, map[string]string{"c": "user:1001", "d": d})
	if st/100 != 2 {
		t.Fatalf("mesh publish: %d %s", st, out)
	}
	if got := c.read(); got != d {
		t.Fatalf("got %q, want %q", got, d)
	}
}

func TestNotificationReachesEveryConnectionOfTheUser(t *testing.T) {
	n := startNode(t)
	a := []*wsClient{n.connect("alice"), n.connect("alice"), n.connect("alice")}
	b := n.connect("bob")
	// A ping round trip proves each connection is registered.
	for _, c := range append(a, b) {
		if r := c.call(map[string]any{"op": "ping"}); r["op"] != "pong" {
			t.Fatalf("ping: %v", r)
		}
	}
	ids := n.notify([]string{"alice"}, nil)
	for i, c := range a {
		ev := c.readJSON()
		data, _ := ev["data"].(map[string]any)
		if ev["event"] != "notification" || ev["channel"] != "user:alice" || ev["id"] != "1" ||
			data["id"] != ids[0] || data["seq"] != 1.0 || data["title"] != "Alice replied" || data["read_at"] != nil {
			t.Fatalf("connection %d got %v", i, ev)
		}
	}
	// Bob's next frame is his own marker, not Alice's notification.
	n.do("POST", "/v1/mesh/publish", testAPIKey, map[string]string{"c": "user:bob", "d": "marker"})
	if got := b.read(); got != "marker" {
		t.Fatalf("bob got %q before his marker", got)
	}
}

func TestSubscribeRules(t *testing.T) {
	n := startNode(t)
	c := n.connect("alice")
	if r := c.call(map[string]any{"op": "subscribe", "channel": "user:bob", "ref": 1}); r["code"] != 3.0 || r["ref"] != 1.0 {
		t.Fatalf("other user's channel: %v", r)
	}
	if r := c.call(map[string]any{"op": "subscribe", "channel": "user:alice", "ref": "own"}); r["result"] != true || r["ref"] != "own" {
		t.Fatalf("own channel: %v", r)
	}
	if r := c.call(map[string]any{"op": "subscribe", "channel": "post:42"}); r["result"] != true {
		t.Fatalf("topic channel: %v", r)
	}
	// Subscribing to the personal channel twice delivers once.
	n.do("POST", "/v1/mesh/publish", testAPIKey, map[string]string{"c": "user:alice", "d": "one"})
	n.do("POST", "/v1/mesh/publish", testAPIKey, map[string]string{"c": "post:42", "d": "two"})
	if got := c.read(); got != "one" {
		t.Fatal(got)
	}
	if got := c.read(); got != "two" {
		t.Fatalf("duplicate or missing delivery: %q", got)
	}
	// Before auth, subscribe is refused with code 1.
	anon, _, err := n.dial("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := anon.call(map[string]any{"op": "subscribe", "channel": "@user"}); r["code"] != 1.0 {
		t.Fatalf("unauthenticated subscribe: %v", r)
	}
}

func TestTopicPublish(t *testing.T) {
	n := startNode(t)
	c := n.connect("alice")
	c.call(map[string]any{"op": "subscribe", "channel": "post:42"})
	st, out := n.do("POST", "/v1/publish", testAPIKey, map[string]any{"channel": "post:42", "event": "comment.created", "data": map[string]int{"id": 7}})
	if st/100 != 2 {
		t.Fatalf("%d %s", st, out)
	}
	if got := c.read(); got != `{"event":"comment.created","channel":"post:42","data":{"id":7}}` {
		t.Fatal(got)
	}
	c.call(map[string]any{"op": "unsubscribe", "channel": "post:42"})
	n.do("POST", "/v1/publish", testAPIKey, map[string]any{"channel": "post:42", "event": "x"})
	n.do("POST", "/v1/mesh/publish", testAPIKey, map[string]string{"c": "user:alice", "d": "marker"})
	if got := c.read(); got != "marker" {
		t.Fatalf("got %q after unsubscribe", got)
	}
}

func hs256(t *testing.T, secret string, claims jwt.MapClaims) string {
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func algNone(claims string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc([]byte(claims)) + "."
}

func TestBadTokensRefused(t *testing.T) {
	n := startNode(t)
	exp := time.Now().Add(time.Hour).Unix()
	forged := func() string { // right shape, signed with another key
		h := hmac.New(sha256.New, []byte("other"))
		enc := base64.RawURLEncoding.EncodeToString
		head := enc([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc([]byte(fmt.Sprintf(`{"sub":"alice","exp":%d}`, exp)))
		h.Write([]byte(head))
		return head + "." + enc(h.Sum(nil))
	}
	bad := map[string]string{
		"garbage":   "not-a-token",
		"expired":   hs256(t, testSecret, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(-time.Minute).Unix()}),
		"wrong key": hs256(t, "another-secret", jwt.MapClaims{"sub": "alice", "exp": exp}),
		"forged":    forged(),
		"alg none":  algNone(fmt.Sprintf(`{"sub":"alice","exp":%d}`, exp)),
	}
	for name, tok := range bad {
		// At upgrade: 401 with a JSON error.
		_, resp, err := n.dial("token="+url.QueryEscape(tok), nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s at upgrade: err=%v resp=%v", name, err, resp)
		}
		// By the auth op: code 1, connection stays usable.
		c, _, err := n.dial("", nil)
		if err != nil {
			t.Fatal(err)
		}
		if r := c.call(map[string]any{"op": "auth", "token": tok}); r["code"] != 1.0 {
			t.Errorf("%s by auth op: %v", name, r)
		}
		if r := c.call(map[string]any{"op": "ping"}); r["op"] != "pong" {
			t.Errorf("%s: connection unusable after refusal: %v", name, r)
		}
		// On the user API: 401.
		if st, _ := n.do("GET", "/v1/me/unread", tok, nil); st != http.StatusUnauthorized {
			t.Errorf("%s on user API: %d", name, st)
		}
	}
}

func TestBadFramesKeepTheConnection(t *testing.T) {
	n := startNode(t)
	c := n.connect("alice")
	for _, f := range []string{"hello", `{"op":`, `{"op":"subscribe","channel":5,"ref":9}`, `[1,2]`} {
		c.sendText(f)
		r := c.readJSON()
		if r["code"] != 2.0 || r["msg"] == "" {
			t.Fatalf("%q: %v", f, r)
		}
	}
	if r := c.call(map[string]any{"op": "dance", "ref": "x"}); r["code"] != 7.0 || r["ref"] != "x" {
		t.Fatalf("unknown op: %v", r)
	}
	c.sendText("ping")
	if got := c.read(); got != "pong" {
		t.Fatalf("bare ping: %q", got)
	}
	c.sendText(`{"type":"heartbeat"}`)
	if got := c.read(); got != `{"type":"heartbeat","content":{"body":"","meta_data":""}}` {
		t.Fatalf("heartbeat: %q", got)
	}
}

func TestPublisherAPIErrors(t *testing.T) {
	n := startNode(t, func(c *config.Config) { c.MaxBodyBytes = 1024 })
	cases := []struct {
		name, bearer, body string
		status, code       int
	}{
		{"no key", "", `{"users":["a"]}`, 401, 1},
		{"bad key", "nope", `{"users":["a"]}`, 401, 1},
		{"user token", n.token("alice"), `{"users":["a"]}`, 403, 3},
		{"malformed", testAPIKey, `{"users":["a"],`, 400, 2},
		{"not an object", testAPIKey, `"hi"`, 400, 2},
		{"wrong type", testAPIKey, `{"users":"a"}`, 400, 2},
		{"no users", testAPIKey, `{"title":"x"}`, 400, 2},
		{"too large", testAPIKey, `{"users":["a"],"body":"` + strings.Repeat("x", 2000) + `"}`, 413, 5},
	}
	for _, c := range cases {
		st, out := n.do("POST", "/v1/notifications", c.bearer, c.body)
		var e struct {
			Code int
			Msg  string
		}
		_ = json.Unmarshal(out, &e)
		if st != c.status || e.Code != c.code || e.Msg == "" {
			t.Errorf("%s: %d %s", c.name, st, out)
		}
	}
	// Nothing was stored by the refused calls.
	if st, out := n.do("GET", "/v1/me/unread", n.token("a"), nil); st != 200 || string(out) != "{\"count\":0}\n" {
		t.Fatalf("unread after refusals: %d %s", st, out)
	}
	if st, _ := n.do("PUT", "/v1/notifications", testAPIKey, "{}"); st != http.StatusMethodNotAllowed {
		t.Fatalf("PUT: %d", st)
	}
	if st, _ := n.do("GET", "/v1/nothing-here", "", nil); st != http.StatusNotFound {
		t.Fatalf("unknown path: %d", st)
	}
}

func TestIdempotentRetryStoresOnce(t *testing.T) {
	n := startNode(t)
	c := n.connect("alice")
	c.call(map[string]any{"op": "ping"})
	key := map[string]any{"idempotency_key": "order-17-paid"}
	first := n.notify([]string{"alice"}, key)
	second := n.notify([]string{"alice"}, key)
	if len(first) != 1 || first[0] != second[0] {
		t.Fatalf("ids %v then %v", first, second)
	}
	st, out := n.do("GET", "/v1/me/notifications", n.token("alice"), nil)
	var page struct {
		Items  []map[string]any
		Unread int
	}
	_ = json.Unmarshal(out, &page)
	if st != 200 || len(page.Items) != 1 || page.Unread != 1 {
		t.Fatalf("inbox after retry: %d %s", st, out)
	}
	// The retry was not pushed a second time.
	c.readJSON()
	n.do("POST", "/v1/mesh/publish", testAPIKey, map[string]string{"c": "user:alice", "d": "marker"})
	if got := c.read(); got != "marker" {
		t.Fatalf("retry pushed again: %q", got)
	}
}

func TestReadStateSync(t *testing.T) {
	n := startNode(t)
	c1, c2 := n.connect("alice"), n.connect("alice")
	c1.call(map[string]any{"op": "ping"})
	c2.call(map[string]any{"op": "ping"})
	ids := n.notify([]string{"alice"}, nil)
	n.notify([]string{"alice"}, nil)
	for _, c := range []*wsClient{c1, c2} {
		c.readJSON()
		c.readJSON()
	}
	// Over the WebSocket: the sender gets its reply and the read event,
	// the other connection the read event.
	c1.send(map[string]any{"op": "read", "ids": []string{ids[0]}, "ref": 5})
	var reply, ev map[string]any
	for i := 0; i < 2; i++ {
		m := c1.readJSON()
		if m["event"] != nil {
			ev = m
		} else {
			reply = m
		}
	}
	if reply["result"] != true || reply["ref"] != 5.0 || reply["unread"] != 1.0 {
		t.Fatalf("read reply: %v", reply)
	}
	for _, e := range []map[string]any{ev, c2.readJSON()} {
		d, _ := e["data"].(map[string]any)
		if e["event"] != "read" || d["unread"] != 1.0 || fmt.Sprint(d["ids"]) != fmt.Sprint([]any{ids[0]}) {
			t.Fatalf("read event: %v", e)
		}
	}
	// Over HTTP: all read.
	st, out := n.do("POST", "/v1/me/read", n.token("alice"), map[string]bool{"all": true})
	if st != 200 || strings.TrimSpace(string(out)) != `{"unread":0}` {
		t.Fatalf("%d %s", st, out)
	}
	for _, c := range []*wsClient{c1, c2} {
		e := c.readJSON()
		d, _ := e["data"].(map[string]any)
		if e["event"] != "read" || d["all"] != true || d["unread"] != 0.0 {
			t.Fatalf("read-all event: %v", e)
		}
	}
}

func TestInboxAPI(t *testing.T) {
	n := startNode(t)
	alice, bob := n.token("alice"), n.token("bob")
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, n.notify([]string{"alice"}, map[string]any{"title": fmt.Sprint("n", i)})...)
	}
	type page struct {
		Items []struct {
			ID     string
			Seq    int
			Title  string
			ReadAt *string `json:"read_at"`
		}
		Next, Cursor string
		Unread       int
	}
	get := func(q string) page {
		st, out := n.do("GET", "/v1/me/notifications"+q, alice, nil)
		if st != 200 {
			t.Fatalf("%s: %d %s", q, st, out)
		}
		var p page
		if err := json.Unmarshal(out, &p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := get("?limit=2")
	if len(p.Items) != 2 || p.Items[0].Seq != 5 || p.Items[1].Seq != 4 || p.Next != "4" || p.Unread != 5 || p.Cursor != "5" {
		t.Fatalf("first page: %+v", p)
	}
	p = get("?limit=2&before=" + p.Next)
	if len(p.Items) != 2 || p.Items[0].Seq != 3 {
		t.Fatalf("second page: %+v", p)
	}
	n.do("POST", "/v1/me/read", alice, map[string]any{"ids": []string{ids[4], ids[3]}})
	p = get("?unread=true")
	if len(p.Items) != 3 || p.Unread != 3 || p.Items[0].Seq != 3 {
		t.Fatalf("unread filter: %+v", p)
	}
	if st, _ := n.do("DELETE", "/v1/me/notifications/"+ids[0], bob, nil); st != 404 {
		t.Fatalf("bob deleting alice's: %d", st)
	}
	if st, out := n.do("POST", "/v1/me/read", bob, map[string]any{"ids": []string{ids[0]}}); st != 404 {
		t.Fatalf("bob reading alice's: %d %s", st, out)
	}
	if st, out := n.do("DELETE", "/v1/me/notifications/"+ids[0], alice, nil); st != 204 {
		t.Fatalf("delete: %d %s", st, out)
	}
	if st, _ := n.do("DELETE", "/v1/me/notifications/"+ids[0], alice, nil); st != 404 {
		t.Fatalf("delete twice: %d", st)
	}
	if st, out := n.do("GET", "/v1/me/unread", alice, nil); st != 200 || strings.TrimSpace(string(out)) != `{"count":2}` {
		t.Fatalf("unread: %d %s", st, out)
	}
	if st, _ := n.do("GET", "/v1/me/notifications?limit=0", alice, nil); st != 400 {
		t.Fatalf("limit=0: %d", st)
	}
}

func TestIdleConnectionsAreClosed(t *testing.T) {
	n := startNode(t, func(c *config.Config) {
		c.PingInterval = 100 * time.Millisecond
		c.IdleTimeout = 400 * time.Millisecond
	})
	live := n.connect("alice")
	dead := n.connect("alice")
	_ = dead // never reads: never answers pings
	deadline := time.Now().Add(10 * time.Second)
	for {
		// The live client answers pings while it reads (gorilla answers
		// pings inside ReadMessage) and also sends frames.
		live.send(map[string]any{"op": "ping"})
		if r := live.readJSON(); r["op"] != "pong" {
			t.Fatalf("live: %v", r)
		}
		st := n.srv.Stats().(map[string]any)
		if st["connections"].(map[string]int64)["ws"] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("silent connection not closed: %v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// An HTTP keep-alive connection silent for idle_timeout is closed, so
// clients that vanish do not hold descriptors (the listener sets no TCP
// keep-alive probes).
func TestIdleHTTPConnectionsAreClosed(t *testing.T) {
	n := startNode(t, func(c *config.Config) {
		c.PingInterval = 100 * time.Millisecond
		c.IdleTimeout = 300 * time.Millisecond
	})
	c, err := net.Dial("tcp", strings.TrimPrefix(n.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: tidings\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("healthz: %d, close %v", resp.StatusCode, resp.Close)
	}
	// Kept alive, then closed by the server once idle.
	start := time.Now()
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the answer: %v, want the server to close", err)
	}
	if waited := time.Since(start); waited < 200*time.Millisecond {
		t.Fatalf("closed after %v, before the idle timeout", waited)
	}
}

func TestOriginCheck(t *testing.T) {
	n := startNode(t, func(c *config.Config) { c.AllowedOrigins = []string{"https://app.example"} })
	tok := "token=" + url.QueryEscape(n.token("alice"))
	if _, resp, err := n.dial(tok, http.Header{"Origin": {"https://evil.example"}}); err == nil || resp.StatusCode != 403 {
		t.Fatalf("foreign origin: %v %v", err, resp)
	}
	if _, _, err := n.dial(tok, http.Header{"Origin": {"https://app.example"}}); err != nil {
		t.Fatalf("allowed origin: %v", err)
	}
	if _, _, err := n.dial(tok, nil); err != nil {
		t.Fatalf("no origin: %v", err)
	}
}

func TestOperatorEndpoints(t *testing.T) {
	n := startNode(t, func(c *config.Config) { c.PathPrefix = "/websocket" })
	if st, _ := n.do("GET", "/healthz", "", nil); st != 200 {
		t.Fatalf("healthz %d", st)
	}
	if st, _ := n.do("GET", "/readyz", "", nil); st != 200 {
		t.Fatalf("readyz %d", st)
	}
	if st, _ := n.do("GET", "/v1/admin/stats", "", nil); st != 401 {
		t.Fatalf("stats without key %d", st)
	}
	if st, _ := n.do("GET", "/v1/admin/stats", testAPIKey, nil); st != 403 {
		t.Fatalf("stats with API key %d", st)
	}
	// The 101 reaches the client before the server has counted the
	// connection; the answer to a ping comes after.
	n.connect("alice").call(map[string]any{"op": "ping"})
	st, out := n.do("GET", "/v1/admin/stats", testAdmin, nil)
	var s struct {
		Node        string
		Connections struct{ Total, WS int }
		UsersOnline int `json:"users_online"`
		Goroutines  int
	}
	if err := json.Unmarshal(out, &s); st != 200 || err != nil || s.Node == "" || s.Connections.WS != 1 || s.UsersOnline != 1 || s.Goroutines == 0 {
		t.Fatalf("stats: %d %s", st, out)
	}
	st, out = n.do("GET", "/", "", nil)
	if st != 200 || !strings.Contains(string(out), "<html") {
		t.Fatalf("demo page: %d", st)
	}
}

func TestOversizedFrameClosesWith1009(t *testing.T) {
	n := startNode(t, func(c *config.Config) { c.MaxFrameBytes = 1024 })
	big, other := n.connect("alice"), n.connect("bob")
	big.sendText(`{"op":"ping","pad":"` + strings.Repeat("x", 4096) + `"}`)
	_ = big.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err := big.c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseMessageTooBig {
		t.Fatalf("oversized frame: %v, want close 1009", err)
	}
	if r := other.call(map[string]any{"op": "ping"}); r["op"] != "pong" {
		t.Fatalf("other connection affected: %v", r)
	}
}

// Seed 003: tokens checked by the app's webhook, {"token"} → {"uid"}.
func TestAuthWebhook(t *testing.T) {
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in struct{ Token string }
		_ = json.NewDecoder(r.Body).Decode(&in)
		if in.Token != "session-abc" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte(`{"uid":1001}`))
	}))
	defer hook.Close()
	n := startNode(t, func(c *config.Config) {
		c.JWTSecret = ""
		c.AuthWebhookURL = hook.URL
	})
	c, _, err := n.dial("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.call(map[string]any{"op": "auth", "token": "session-abc"}); got["result"] != true {
		t.Fatalf("auth: %v", got)
	}
	if got := c.call(map[string]any{"op": "subscribe", "channel": "@user"}); got["result"] != true {
		t.Fatalf("subscribe: %v", got)
	}
	n.do("POST", "/v1/mesh/publish", testAPIKey, map[string]string{"c": "user:1001", "d": "hello 1001"})
	if got := c.read(); got != "hello 1001" {
		t.Fatalf("got %q", got)
	}
	if got := c.call(map[string]any{"op": "auth", "token": "wrong"}); got["code"] != 1.0 {
		t.Fatalf("refused token: %v", got)
	}
	if st, _ := n.do("GET", "/v1/me/unread", "session-abc", nil); st != 200 {
		t.Fatalf("user API with webhook token: %d", st)
	}
}

// With min_write_interval, a notification to a connection written a moment
// ago waits for the next write; a reply takes it along, in order.
func TestMinWriteIntervalCoalesces(t *testing.T) {
	n := startNode(t, func(c *config.Config) { c.MinWriteInterval = time.Second })
	a := n.connect("alice")
	if r := a.call(map[string]any{"op": "ping"}); r["op"] != "pong" {
		t.Fatalf("ping: %v", r)
	}
	// The first one after the reply goes out at the next tick, which is
	// at once: the ticks had stopped.
	first := n.notify([]string{"alice"}, nil)
	if data, _ := a.readJSON()["data"].(map[string]any); data["id"] != first[0] {
		t.Fatalf("first notification: %v", data)
	}
	// The next one waits for the tick after that, a second later...
	kept := n.notify([]string{"alice"}, nil)
	// ...so there is nothing on the wire yet (read below the WebSocket
	// reader, so that a timeout leaves it usable).
	raw := a.c.UnderlyingConn()
	_ = raw.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if k, err := raw.Read(make([]byte, 1)); k != 0 || err == nil {
		t.Fatalf("read %d bytes (%v) before the interval was over", k, err)
	}
	// A reply is written at once, and takes the kept one along, first.
	a.send(map[string]any{"op": "ping"})
	if data, _ := a.readJSON()["data"].(map[string]any); data["id"] != kept[0] {
		t.Fatalf("kept notification: %v", data)
	}
	if r := a.readJSON(); r["op"] != "pong" {
		t.Fatalf("after the kept notification: %v", r)
	}
}
