// Package sse is the Server-Sent Events transport of Tidings: a plain
// browser EventSource receives named events.
//
//	GET <path_prefix><sse_path>?channel=a&channel=b        default: /v1/sse
//
// # Request
//
//   - Token: query parameter token, Authorization: Bearer, or the token
//     cookie (the same sources as the WebSocket upgrade). A missing or
//     refused token answers 401 {"code":1,…}.
//   - Origin: the same rule as the WebSocket (403 {"code":3,…}).
//   - channel: repeated for several channels; none means "@user", which
//     stands for the caller's user:<id>. Each channel passes the
//     subscription rules (403 or 400 {"code":…}); more than
//     max_subscriptions channels answer 400 {"code":8,…}. Every refusal
//     is a JSON answer sent before anything is streamed.
//   - Cursor: the Last-Event-ID header, else the query parameter
//     lastEventId, else last_event_id. A malformed one answers 400.
//
// # Stream
//
// The response is HTTP/1.1 200 with Content-Type: text/event-stream,
// Cache-Control: no-cache, Connection: keep-alive, X-Accel-Buffering: no
// and neither Content-Length nor chunked encoding: the body ends when the
// connection closes. A request with an Origin header (a cross-origin
// EventSource the origin rule allowed) also gets Access-Control-Allow-Origin
// (that origin) and Access-Control-Allow-Credentials: true. The body starts
// with
//
//	retry: <ms>
//
//	: ok
//
// and the head is written only once every channel of the stream is
// subscribed, so a client that has read it misses no later publication.
// Each event is
//
//	id: <cursor>            (only for events that have one)
//	event: <type>           (notification, read, gap, a publisher's name)
//	data: <JSON>            (what a WebSocket event's "data" carries)
//
// A raw publication (POST /v1/mesh/publish) is data lines only, which
// EventSource dispatches as a "message" event. The keep-alive comment
// ": keep-alive" comes every ping_interval; SSE clients send nothing, so
// they are never closed as idle: a dead peer shows up as a failed write or
// when the socket reports it closed.
//
// # Cursors and resume
//
// With one channel, id is that channel's cursor as a decimal string (a
// notification's seq, a topic channel's history offset). With several
// channels, id is the opaque cursor of all of them (tidings.EncodeCursor),
// written per connection by the hub from what it delivered. A browser
// reconnecting after a drop sends the last id it saw as Last-Event-ID;
// the stream then replays what each channel published after its position
// (a "gap" event first when part of it is no longer kept), then goes live,
// with no gap and no duplicate.
//
// # Connections
//
// The request is hijacked and the socket handed to an epoll poller
// (netpoll), as the WebSocket transport does: an idle stream costs no
// goroutine and no buffer. Bytes the client sends are read and ignored;
// reading only notices that the client went away. Writes go through the
// hub's workers; past max write bytes buffered for a slow client the
// connection is closed. On drain each stream gets a retry: line with a
// jittered delay and is closed; EventSource reconnects by itself.
package sse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/internal/hub"
	"github.com/tidings/tidings/internal/transport/netpoll"
)

// KeepAlive is the comment sent to every stream each ping interval, so
// proxies keep the connection open.
var KeepAlive = []byte(": keep-alive\n\n")

// The access interfaces the SSE server needs (see the tidings package).
type (
	Authenticator = tidings.Authenticator
	Authorizer    = tidings.Authorizer
	Replayer      = tidings.Replayer
)

// Options of the SSE server.
type Options struct {
	Hub              *hub.Hub
	Auth             Authenticator
	Rules            Authorizer
	Inbox            Replayer
	Token            func(r *http.Request) string // the request's user token, if any
	CheckOrigin      func(r *http.Request) bool
	MaxSubscriptions int           // channels per stream; 0 = unlimited
	MaxWriteBytes    int           // slow-consumer limit: bytes buffered for one peer before it is closed; default 4 MiB
	Retry            time.Duration // the reconnect delay sent in the retry: line; default 3 s
	OpTimeout        time.Duration // bound on the backend calls of one request; default 10 s
	Logger           *slog.Logger
}

// Server answers SSE requests and serves the streams.
type Server struct {
	opt      Options
	engine   *netpoll.Engine
	log      *slog.Logger
	head     []byte // the response head and the first lines; shared, read-only
	count    atomic.Int64
	draining atomic.Bool
	hint     atomic.Pointer[func() time.Duration] // drain: the retry delay for one stream
}

// New makes a server; Start starts its poller.
func New(opt Options) *Server {
	if opt.MaxWriteBytes <= 0 {
		opt.MaxWriteBytes = 4 << 20
	}
	if opt.Retry <= 0 {
		opt.Retry = 3 * time.Second
	}
	if opt.OpTimeout <= 0 {
		opt.OpTimeout = 10 * time.Second
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	s := &Server{opt: opt, log: opt.Logger}
	s.head = s.makeHead("")
	s.engine = netpoll.NewEngine(netpoll.Config{
		Pollers:        runtime.GOMAXPROCS(0),
		ReadBuffer:     4 << 10, // one per poller; what is read is dropped
		MaxWriteBuffer: opt.MaxWriteBytes,
	})
	return s
}

// makeHead is the response head and the stream's first lines. A request
// with an Origin (a cross-origin EventSource the origin rule allowed) gets
// the CORS headers that let the page read the stream, with credentials
// (the token cookie).
func (s *Server) makeHead(origin string) []byte {
	b := []byte("HTTP/1.1 200 OK\r\n" +
		"Content-Type: text/event-stream\r\n" +
		"Cache-Control: no-cache\r\n" +
		"Connection: keep-alive\r\n" +
		"X-Accel-Buffering: no\r\n")
	if origin != "" {
		b = fmt.Appendf(b, "Access-Control-Allow-Origin: %s\r\nAccess-Control-Allow-Credentials: true\r\n", origin)
	}
	return fmt.Appendf(b, "\r\nretry: %d\n\n: ok\n\n", s.opt.Retry.Milliseconds())
}

// Start starts the poller goroutines.
func (s *Server) Start() error { return s.engine.Start() }

// Stop closes every stream and the poller.
func (s *Server) Stop() { s.engine.Stop() }

// Count is the number of open SSE connections.
func (s *Server) Count() int64 { return s.count.Load() }

// Refuse answers new streams 503 from now on (the first step of a
// drain); open streams go on.
func (s *Server) Refuse() { s.draining.Store(true) }

// Drain refuses new streams and closes the open ones. Before closing,
// each stream gets "retry: <ms>" with a delay drawn by jitter over spread
// (at least 500 ms, so a browser does not come straight back to this
// node), which EventSource waits before reconnecting.
func (s *Server) Drain(spread time.Duration, jitter func(time.Duration) time.Duration) {
	hint := func() time.Duration {
		d := time.Duration(0)
		if jitter != nil && spread > 0 {
			d = jitter(spread)
		}
		return max(d, 500*time.Millisecond)
	}
	s.hint.Store(&hint)
	s.draining.Store(true)
	s.opt.Hub.ForEach(func(c *hub.Conn) {
		if c.Kind == hub.KindSSE || c.Kind == hub.KindSSEMulti {
			s.opt.Hub.CloseConn(c, 1012, "service restart")
		}
	})
}

// ServeHTTP checks the request, then hijacks the connection, hands it to
// the poller and starts the stream.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		tidings.WriteHTTPError(w, tidings.Errorf(tidings.CodeMethodNotAllowed, "method %s not allowed on %s", r.Method, r.URL.Path))
		return
	}
	if s.draining.Load() {
		tidings.WriteHTTPError(w, tidings.Errorf(tidings.CodeUnavailable, "server is restarting; reconnect to another node"))
		return
	}
	if s.opt.CheckOrigin != nil && !s.opt.CheckOrigin(r) {
		tidings.WriteHTTPError(w, tidings.Errorf(tidings.CodeForbidden, "origin not allowed"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.opt.OpTimeout)
	defer cancel()
	tok := ""
	if s.opt.Token != nil {
		tok = s.opt.Token(r)
	}
	if tok == "" {
		tidings.WriteHTTPError(w, tidings.Errorf(tidings.CodeNotAuthenticated, "no token"))
		return
	}
	id, err := s.opt.Auth.Authenticate(ctx, tok)
	if err != nil {
		tidings.WriteHTTPError(w, err)
		return
	}
	chans, cur, err := s.channels(ctx, id, r)
	if err != nil {
		tidings.WriteHTTPError(w, err)
		return
	}

	kind := hub.KindSSE
	if len(chans) > 1 {
		kind = hub.KindSSEMulti
	}
	ss := &session{s: s, head: s.head}
	if o := r.Header.Get("Origin"); o != "" && validHeaderValue(o) {
		ss.head = s.makeHead(o)
	}
	s.opt.Hub.AttachConn(&ss.conn, kind, ss)
	if err := s.opt.Hub.Authenticate(&ss.conn, id.User, id.Expires); err != nil {
		s.opt.Hub.Detach(&ss.conn)
		tidings.WriteHTTPError(w, err)
		return
	}
	nc := &ss.sock
	if err := s.hijack(w, r, nc); err != nil {
		s.opt.Hub.Detach(&ss.conn)
		return
	}
	s.count.Add(1)
	ss.taken.Store(true)
	if err := s.engine.Add(nc, ss); err != nil {
		if !errors.Is(err, netpoll.ErrClosed) { // not closed by a drain
			s.log.Warn("sse: poller refused the connection", "err", err, "remote", r.RemoteAddr)
		}
		_ = nc.Close() // not on a poller: no Closed call
		ss.finish()
		return
	}
	if ss.closing.Load() { // Drain ran while the connection was being set up
		_ = nc.Close()
		return
	}
	if err := s.start(ctx, ss, chans, cur); err != nil {
		if !ss.done.Load() {
			s.log.Warn("sse: stream start failed", "err", err, "remote", r.RemoteAddr)
		}
		ss.Close(0, "")
	}
}

// channels resolves, checks and deduplicates the requested channels and
// reads the cursor.
func (s *Server) channels(ctx context.Context, id tidings.Identity, r *http.Request) ([]string, cursor, error) {
	resolve := func(ch string) string {
		if ch == tidings.UserAlias {
			return tidings.PersonalChannel(id.User)
		}
		return ch
	}
	asked := r.URL.Query()["channel"]
	if len(asked) == 0 {
		asked = []string{tidings.UserAlias}
	}
	var chans []string
	seen := make(map[string]bool, len(asked))
	for _, a := range asked {
		ch := resolve(a)
		if seen[ch] {
			continue
		}
		seen[ch] = true
		chans = append(chans, ch)
		if m := s.opt.MaxSubscriptions; m > 0 && len(chans) > m {
			return nil, nil, tidings.Errorf(tidings.CodeTooManySubs, "subscription limit reached: at most %d channels per stream", m)
		}
	}
	for _, ch := range chans {
		if err := s.opt.Rules.Allow(ctx, id, ch); err != nil {
			return nil, nil, err
		}
	}
	cur, err := parseCursor(lastEventID(r), chans)
	if err != nil {
		return nil, nil, err
	}
	return chans, cur, nil
}

// hijack takes the connection from the HTTP server and moves its socket
// into nc. What the HTTP server had already buffered from the client is
// dropped: a GET has no body.
func (s *Server) hijack(w http.ResponseWriter, r *http.Request, nc *netpoll.Conn) error {
	hj, ok := w.(http.Hijacker)
	if !ok {
		err := errors.New("the response writer cannot be hijacked")
		s.log.Error("sse: "+err.Error(), "remote", r.RemoteAddr)
		tidings.WriteHTTPError(w, tidings.Errorf(tidings.CodeInternal, "streaming is not available on this connection"))
		return err
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		s.log.Error("sse: hijack", "err", err, "remote", r.RemoteAddr)
		return err
	}
	if err := netpoll.Take(nc, conn); err != nil { // not a plain socket (TLS terminated in process, for one)
		s.log.Error("sse: connection cannot be moved to the poller", "err", err, "remote", r.RemoteAddr)
		writeRawError(conn, tidings.Errorf(tidings.CodeInternal, "streaming is not available on this connection"))
		_ = conn.Close()
		return err
	}
	return nil
}

// start subscribes the connection to every channel and only then queues
// the head; each channel's replay (the cursor's channel) and the live
// frames that came while it was being set up follow the head.
//
// The hub's Resume keeps a channel's live frames aside from its
// subscription until its release, and runs load between the two. Calling
// the next channel's Resume from inside load nests the calls, so the
// connection's worker queue reads:
//
//	hold a, subscribe a, hold b, subscribe b, …, head,
//	release …(replay), release b(replay), release a(replay)
//
// Every channel is subscribed before the head, and nothing but the head
// comes first.
//
// When the replay cannot be loaded the connection is closed before the
// channel's held frames are released, so the client's last event id stays
// where it was and its reconnect asks for the same replay again.
func (s *Server) start(ctx context.Context, ss *session, chans []string, cur cursor) error {
	multi := len(chans) > 1
	var resume func(i int) error
	resume = func(i int) error {
		var reply []byte
		if i == len(chans)-1 {
			reply = ss.head
		}
		ch := chans[i]
		after, given := cur[ch]
		if !given && multi {
			// From now, at a known position: the stream's cursor then
			// names this channel too, so a reconnect misses nothing.
			now, err := s.opt.Inbox.Cursor(ctx, ch)
			if err != nil {
				return err
			}
			after = now
		}
		_, err := s.opt.Hub.Resume(&ss.conn, ch, after, reply, func() ([]*tidings.Message, error) {
			if i+1 < len(chans) {
				if err := resume(i + 1); err != nil {
					return nil, err
				}
			}
			if !given {
				return nil, nil
			}
			replay, err := s.opt.Inbox.Replay(ctx, ch, after)
			if err != nil {
				ss.Close(0, "")
			}
			return replay, err
		})
		return err
	}
	return resume(0)
}

// session is one stream.
type session struct {
	// The socket and the hub's view of the connection come first and
	// side by side: a delivery touches both (see hub.Conn).
	sock netpoll.Conn
	conn hub.Conn

	s     *Server
	taken atomic.Bool // sock holds the hijacked socket
	// head is the response head (the server's shared one, or one with
	// CORS headers); the worker drops it once it went out.
	head []byte

	started   atomic.Bool // the head went out (written or kept); written by the worker only
	closing   atomic.Bool
	done      atomic.Bool // detached: the client went away or was closed
	closeOnce sync.Once
}

// Write implements hub.Sink: several messages, one vectored write. Until
// the head went out, what the hub queued for the connection (a keep-alive
// from the sweep) is dropped: nothing may precede the response head. The
// poller keeps what the socket does not take and closes the peer past
// MaxWriteBytes.
func (ss *session) Write(bufs [][]byte) error {
	head := false
	if !ss.started.Load() {
		i := 0
		for i < len(bufs) && !isHead(bufs[i], ss.head) {
			i++
		}
		if i == len(bufs) {
			return nil
		}
		bufs = bufs[i:]
		ss.head = nil
		head = true
	}
	var err error
	if len(bufs) == 1 { // the head is queued after the hijack: sock is taken
		_, err = ss.sock.Write(bufs[0])
	} else {
		_, err = ss.sock.Writev(bufs)
	}
	if head {
		// Only now: a drain's retry: line (Close) must land behind the head.
		ss.started.Store(true)
	}
	return err
}

// isHead reports whether b is the server's head slice itself (not a copy).
func isHead(b, head []byte) bool { return len(b) > 0 && len(b) == len(head) && &b[0] == &head[0] }

// Close implements hub.Sink. A stream has no close frame; on drain it
// gets a retry: line with a jittered delay first.
func (ss *session) Close(code int, _ string) {
	ss.closing.Store(true)
	if !ss.taken.Load() {
		return // ServeHTTP closes it once it has it
	}
	nc := &ss.sock
	if hint := ss.s.hint.Load(); hint != nil && code == 1012 && ss.started.Load() {
		_, _ = nc.Write([]byte("retry: " + strconv.FormatInt((*hint)().Milliseconds(), 10) + "\n\n"))
	}
	_ = nc.Close()
}

// Parse implements netpoll.Session: what a client sends on a stream is
// dropped.
func (ss *session) Parse([]byte) {}

// Closed implements netpoll.Session.
func (ss *session) Closed() { ss.finish() }

// finish detaches the stream from the hub, once.
func (ss *session) finish() {
	ss.closeOnce.Do(func() {
		ss.done.Store(true)
		ss.s.opt.Hub.Detach(&ss.conn)
		ss.s.count.Add(-1)
	})
}

// validHeaderValue reports whether v can be echoed in a header line.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// writeRawError writes a JSON error answer on a hijacked connection.
func writeRawError(conn net.Conn, err error) {
	e := tidings.ErrorOf(err)
	body, _ := json.Marshal(e)
	body = append(body, '\n')
	st := e.Code.HTTPStatus()
	_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = fmt.Fprintf(conn, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		st, http.StatusText(st), len(body), body)
}
