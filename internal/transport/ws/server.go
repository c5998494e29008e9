// Package ws is the WebSocket transport of Tidings (docs/PROTOCOL.md).
//
// The HTTP upgrade is answered here (on the standard net/http server or
// its fast path); the socket is then handed to an epoll poller (netpoll),
// so an idle connection costs no goroutine and no read buffer: frames are
// read on the poller's goroutines (reader.go), a connection's messages
// are handled in order by a goroutine that lives only while it has some,
// and writes go through the hub's workers.
package ws

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/internal/hub"
	"github.com/tidings/tidings/internal/inbox"
	"github.com/tidings/tidings/internal/transport/netpoll"
)

// The access interfaces the WebSocket server needs (see the tidings
// package).
type (
	Authenticator = tidings.Authenticator
	Authorizer    = tidings.Authorizer
)

// Options of the WebSocket server.
type Options struct {
	Hub           *hub.Hub
	Auth          Authenticator
	Rules         Authorizer
	Inbox         *inbox.Service
	Token         func(r *http.Request) string // the token sent with the upgrade request, if any
	CheckOrigin   func(r *http.Request) bool
	MaxFrameBytes int           // default 64 KiB
	MaxWriteBytes int           // slow-consumer limit: bytes buffered for one peer before it is closed; default 4 MiB
	OpTimeout     time.Duration // bound on one op's backend calls; default 10 s
	Logger        *slog.Logger
}

var errBinary = tidings.Errorf(tidings.CodeBadRequest, "bad frame: only text frames are accepted")

// Server upgrades requests and serves WebSocket connections.
type Server struct {
	opt      Options
	engine   *netpoll.Engine
	log      *slog.Logger
	count    atomic.Int64
	draining atomic.Bool
}

// New makes a server; Start starts its poller.
func New(opt Options) *Server {
	if opt.MaxFrameBytes <= 0 {
		opt.MaxFrameBytes = 64 << 10
	}
	if opt.MaxWriteBytes <= 0 {
		opt.MaxWriteBytes = 4 << 20
	}
	if opt.OpTimeout <= 0 {
		opt.OpTimeout = 10 * time.Second
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	s := &Server{opt: opt, log: opt.Logger}
	// No read deadline per connection: the hub's sweep closes connections
	// silent past idle_timeout.
	s.engine = netpoll.NewEngine(netpoll.Config{
		Pollers:        runtime.GOMAXPROCS(0),
		MaxWriteBuffer: opt.MaxWriteBytes,
	})
	return s
}

// Start starts the poller goroutines (no listener: connections arrive
// through ServeHTTP).
func (s *Server) Start() error { return s.engine.Start() }

// Stop closes every connection and the poller.
func (s *Server) Stop() { s.engine.Stop() }

// Count is the number of open WebSocket connections.
func (s *Server) Count() int64 { return s.count.Load() }

// ServeHTTP authenticates (when the request carries a token), upgrades,
// and hands the connection to the poller.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		tidings.WriteHTTPError(w, tidings.Errorf(tidings.CodeUnavailable, "server is restarting; reconnect to another node"))
		return
	}
	if !isUpgrade(r) {
		tidings.WriteHTTPError(w, tidings.Errorf(tidings.CodeBadRequest, "WebSocket upgrade required"))
		return
	}
	if s.opt.CheckOrigin != nil && !s.opt.CheckOrigin(r) {
		tidings.WriteHTTPError(w, tidings.Errorf(tidings.CodeForbidden, "origin not allowed"))
		return
	}
	accept, herr := handshake(r)
	if herr != nil {
		if errors.Is(herr, errVersion) {
			w.Header().Set("Sec-WebSocket-Version", "13")
		}
		tidings.WriteHTTPError(w, herr)
		return
	}
	var since *int64
	// Most upgrades carry no since: skip parsing the query a second time.
	if !strings.Contains(r.URL.RawQuery, "since") {
	} else if v := r.URL.Query().Get("since"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			tidings.WriteHTTPError(w, tidings.Errorf(tidings.CodeBadRequest, "since: %q is not a cursor", v))
			return
		}
		since = &n
	}
	var id *tidings.Identity
	if tok := s.token(r); tok != "" {
		ident, err := s.opt.Auth.Authenticate(r.Context(), tok)
		if err != nil {
			tidings.WriteHTTPError(w, err)
			return
		}
		id = &ident
	}
	ss := &session{s: s}
	nc := &ss.sock
	early, err := s.hijack(w, r, accept, nc)
	if err != nil {
		return
	}
	s.opt.Hub.AttachConn(&ss.conn, hub.KindWS, ss)
	s.count.Add(1)
	if len(early) > 0 { // frames sent right behind the upgrade request
		ss.Parse(early)
	}
	if err := s.engine.Add(nc, ss); err != nil {
		if !errors.Is(err, netpoll.ErrClosed) { // not closed by the early frames
			s.log.Warn("websocket: poller refused the connection", "err", err, "remote", r.RemoteAddr)
		}
		_ = nc.Close() // not on a poller: no Closed call
		ss.finish()
		return
	}
	// Bind before the connection's messages are handled: a frame sent
	// right after the 101 then finds the connection authenticated.
	var bindErr error
	if id != nil {
		bindErr = ss.bind(*id, since)
	}
	ss.start()
	if bindErr != nil { // the error frame, then the close
		ss.send(errReply(nil, bindErr))
		ss.closeAfterReplies(1008, tidings.ErrorOf(bindErr).Msg)
	}
}

// errVersion is the answer to an upgrade of another protocol version.
var errVersion = tidings.Errorf(tidings.CodeBadRequest, "unsupported WebSocket version; this server speaks 13")

// handshake checks the upgrade request's WebSocket headers (RFC 6455,
// 4.2.1) and returns the Sec-WebSocket-Accept of its key. No subprotocol
// and no extension is taken.
func handshake(r *http.Request) (string, error) {
	if r.Method != http.MethodGet {
		return "", tidings.Errorf(tidings.CodeBadRequest, "a WebSocket upgrade is a GET")
	}
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		return "", errVersion
	}
	key := r.Header.Get("Sec-WebSocket-Key")
	if k, err := base64.StdEncoding.DecodeString(key); err != nil || len(k) != 16 {
		return "", tidings.Errorf(tidings.CodeBadRequest, "Sec-WebSocket-Key is not 16 bytes in base64")
	}
	h := sha1.New()
	h.Write([]byte(key))
	h.Write([]byte("258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h.Sum(nil)), nil
}

// hijack takes the connection from the HTTP server, answers 101 and moves
// its socket into nc. early is what the HTTP server had read past the
// request: frames the client sent without waiting for the answer.
func (s *Server) hijack(w http.ResponseWriter, r *http.Request, accept string, nc *netpoll.Conn) (early []byte, err error) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		err = errors.New("the response writer cannot be hijacked")
		s.log.Error("websocket: "+err.Error(), "remote", r.RemoteAddr)
		tidings.WriteHTTPError(w, tidings.Errorf(tidings.CodeInternal, "WebSocket is not available on this connection"))
		return nil, err
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		s.log.Error("websocket: hijack", "err", err, "remote", r.RemoteAddr)
		return nil, err
	}
	if brw != nil && brw.Reader.Buffered() > 0 {
		early, _ = brw.Reader.Peek(brw.Reader.Buffered())
		early = append([]byte(nil), early...)
	}
	_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err = conn.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + "\r\n\r\n")); err != nil {
		s.log.Debug("websocket upgrade failed", "err", err, "remote", r.RemoteAddr)
		_ = conn.Close()
		return nil, err
	}
	_ = conn.SetWriteDeadline(time.Time{})
	if err = netpoll.Take(nc, conn); err != nil { // not a plain socket (TLS terminated in process, for one)
		s.log.Error("websocket: connection cannot be moved to the poller", "err", err, "remote", r.RemoteAddr)
		_, _ = conn.Write(hub.WSClose(1011, "WebSocket is not available on this connection"))
		_ = conn.Close()
		return nil, err
	}
	return early, nil
}

func (s *Server) token(r *http.Request) string {
	if s.opt.Token == nil {
		return ""
	}
	return s.opt.Token(r)
}

// Closed implements netpoll.Session.
func (ss *session) Closed() { ss.finish() }

// finish detaches a closed connection from the hub, once.
func (ss *session) finish() {
	ss.closeOnce.Do(func() {
		ss.qmu.Lock()
		ss.ended = true
		ss.queue = nil
		ss.qmu.Unlock()
		ss.s.opt.Hub.Detach(&ss.conn)
		ss.s.count.Add(-1)
	})
}

// onMessage handles one client message, on the connection's executor.
func (s *Server) onMessage(ss *session, m queued) {
	if m.binary {
		ss.send(errReply(nil, errBinary))
		return
	}
	f, err := DecodeFrame(m.msg)
	if err != nil {
		ss.send(errReply(f.Ref, err))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opt.OpTimeout)
	defer cancel()
	ss.handle(ctx, &f)
}

// Refuse answers new upgrades 503 from now on (the first step of a
// drain); open connections go on.
func (s *Server) Refuse() { s.draining.Store(true) }

// Drain tells every client to reconnect elsewhere (close 1012, service
// restart) and refuses new upgrades. spread is the window over which
// clients are asked to come back; each close carries a jittered delay
// hint in its reason ("reconnect in 1234ms").
func (s *Server) Drain(spread time.Duration, jitter func(time.Duration) time.Duration) {
	s.draining.Store(true)
	s.opt.Hub.ForEach(func(c *hub.Conn) {
		if c.Kind != hub.KindWS {
			return
		}
		d := time.Duration(0)
		if jitter != nil && spread > 0 {
			d = jitter(spread)
		}
		s.opt.Hub.CloseConn(c, 1012, "service restart; reconnect in "+d.Round(time.Millisecond).String())
	})
}

// session is one WebSocket connection's state.
type session struct {
	// The socket and the hub's view of the connection come first and
	// side by side: a delivery touches both (see hub.Conn), and a
	// broadcast finds neither in cache.
	sock netpoll.Conn
	conn hub.Conn

	s *Server

	mu sync.Mutex
	id *tidings.Identity // nil until authenticated

	// Reading, owned by the poller (reader.go).
	rbuf   []byte // an incomplete frame's bytes; nil when none
	frag   []byte // a fragmented message so far; nil when none
	fragOp byte
	failed bool // closed for a protocol error or the client's close

	// The executor: messages waiting, and whether a goroutine runs them.
	qmu     sync.Mutex
	queue   []queued
	running bool
	started bool // ServeHTTP is done setting the connection up
	ended   bool

	closeOnce sync.Once
}

// queued is a client message waiting for the executor; a binary one is
// answered with an error, in its turn. A close, queued by the reader,
// comes after the answers to the messages before it.
type queued struct {
	msg    []byte
	binary bool
	close  *closeError
}

// maxQueued bounds the messages of one connection waiting for their
// answer; a client that sends faster than its ops are answered is closed.
const maxQueued = 1024

// enqueue queues a message for the executor and starts it when idle; it
// reports false when too many are waiting.
func (ss *session) enqueue(m queued) bool {
	ss.qmu.Lock()
	defer ss.qmu.Unlock()
	if ss.ended {
		return true
	}
	if len(ss.queue) >= maxQueued {
		return false
	}
	ss.queue = append(ss.queue, m)
	ss.kick()
	return true
}

// start lets the executor run, once ServeHTTP has set the connection up.
func (ss *session) start() {
	ss.qmu.Lock()
	ss.started = true
	ss.kick()
	ss.qmu.Unlock()
}

// kick starts the executor goroutine when there is work and none runs;
// ss.qmu is held.
func (ss *session) kick() {
	if ss.started && !ss.running && len(ss.queue) > 0 {
		ss.running = true
		go ss.run()
	}
}

// run handles the queued messages in order, and ends when there are none.
func (ss *session) run() {
	for {
		ss.qmu.Lock()
		if len(ss.queue) == 0 || ss.ended {
			ss.running = false
			ss.queue = nil
			ss.qmu.Unlock()
			return
		}
		m := ss.queue[0]
		ss.queue[0] = queued{}
		ss.queue = ss.queue[1:]
		ss.qmu.Unlock()
		if m.close != nil {
			ss.s.opt.Hub.CloseConn(&ss.conn, m.close.code, m.close.reason)
			continue
		}
		ss.s.onMessage(ss, m)
	}
}

// Write implements hub.Sink: several frames, one vectored write. The
// poller keeps what the socket does not take and closes the peer past
// MaxWriteBytes.
func (ss *session) Write(bufs [][]byte) error {
	if len(bufs) == 1 {
		_, err := ss.sock.Write(bufs[0])
		return err
	}
	_, err := ss.sock.Writev(bufs)
	return err
}

// Close implements hub.Sink.
func (ss *session) Close(code int, reason string) {
	_, _ = ss.sock.Write(hub.WSClose(code, reason))
	_ = ss.sock.Close()
}

// closeAfterReplies closes the connection behind the answers to the
// client's earlier messages and whatever the hub has queued for it: the
// executor, at its turn, hands the close to the hub (Hub.CloseConn),
// which writes what is pending first. It is queued even past maxQueued.
func (ss *session) closeAfterReplies(code int, reason string) {
	ss.qmu.Lock()
	if !ss.ended {
		ss.queue = append(ss.queue, queued{close: &closeError{code, reason}})
		ss.kick()
	}
	ss.qmu.Unlock()
}

// send queues a reply behind whatever the hub is delivering to this
// connection, so replies and events keep their order.
func (ss *session) send(payload []byte) { ss.s.opt.Hub.Send(&ss.conn, hub.WSText(payload)) }

func (ss *session) identity() *tidings.Identity {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.id
}

// bind makes the connection the user's: it then receives the user's
// personal channel without subscribing (PRODUCT.md).
// With since (the upgrade's since query), the personal channel starts
// with the replay of what came after that cursor, so a reconnecting
// client gets everything once and in order.
func (ss *session) bind(id tidings.Identity, since *int64) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.id != nil && ss.id.User != id.User {
		return tidings.Errorf(tidings.CodeForbidden, "connection already authenticated as another user")
	}
	h := ss.s.opt.Hub
	if err := h.Authenticate(&ss.conn, id.User, id.Expires); err != nil {
		return err
	}
	personal := tidings.PersonalChannel(id.User)
	var err error
	if since != nil {
		_, err = h.Resume(&ss.conn, personal, *since, nil, func() ([]*tidings.Message, error) {
			ctx, cancel := context.WithTimeout(context.Background(), ss.s.opt.OpTimeout)
			defer cancel()
			return ss.s.opt.Inbox.Replay(ctx, personal, *since)
		})
	} else {
		_, err = h.Subscribe(&ss.conn, personal)
	}
	if err != nil {
		return err
	}
	ss.id = &id // only now: a refused auth leaves the connection unauthenticated
	return nil
}

func (ss *session) handle(ctx context.Context, f *ClientFrame) {
	switch f.Op {
	case OpBarePing:
		ss.s.opt.Hub.Send(&ss.conn, hub.WSText([]byte("pong")))
		return
	case OpPing:
		ss.send(pongReply(f.Ref))
		return
	case OpHeartbeat:
		ss.send(heartbeatReply)
		return
	case OpAuth:
		ss.send(ss.auth(ctx, f))
		return
	case OpSubscribe, OpUnsubscribe, OpRead:
	default:
		ss.send(errReply(f.Ref, tidings.Errorf(tidings.CodeUnknownOp, "unknown op %q", f.Op)))
		return
	}
	id := ss.identity()
	if id == nil {
		ss.send(errReply(f.Ref, tidings.Errorf(tidings.CodeNotAuthenticated, "not authenticated: send auth first")))
		return
	}
	switch f.Op {
	case OpSubscribe:
		if b := ss.subscribe(ctx, *id, f); b != nil {
			ss.send(b)
		}
	case OpUnsubscribe:
		ss.send(ss.unsubscribe(*id, f))
	case OpRead:
		unread, err := ss.s.opt.Inbox.MarkRead(ctx, id.User, f.IDs, f.All)
		if err != nil {
			ss.send(errReply(f.Ref, err))
			return
		}
		b, _ := json.Marshal(reply{Result: &yes, Unread: &unread, Ref: f.Ref})
		ss.send(b)
	}
}

func (ss *session) auth(ctx context.Context, f *ClientFrame) []byte {
	if f.Token == "" {
		return errReply(f.Ref, tidings.Errorf(tidings.CodeNotAuthenticated, "no token"))
	}
	id, err := ss.s.opt.Auth.Authenticate(ctx, f.Token)
	if err != nil {
		return errReply(f.Ref, err)
	}
	after, resume, err := f.SinceSeq()
	if err != nil {
		return errReply(f.Ref, err)
	}
	var since *int64
	if resume {
		since = &after
	}
	if err := ss.bind(id, since); err != nil {
		return errReply(f.Ref, err)
	}
	return okReply(f.Ref)
}

// resolve maps "@user" to the user's personal channel.
func resolve(id tidings.Identity, channel string) string {
	if channel == tidings.UserAlias {
		return tidings.PersonalChannel(id.User)
	}
	return channel
}

func (ss *session) subscribe(ctx context.Context, id tidings.Identity, f *ClientFrame) []byte {
	if f.Channel == "" {
		return errReply(f.Ref, tidings.Errorf(tidings.CodeBadRequest, "bad frame: channel is required"))
	}
	ch := resolve(id, f.Channel)
	after, resume, err := f.SinceSeq()
	if err != nil {
		return errReply(f.Ref, err)
	}
	if err := ss.s.opt.Rules.Allow(ctx, id, ch); err != nil {
		return errReply(f.Ref, err)
	}
	h := ss.s.opt.Hub
	if !resume {
		if _, err := h.Subscribe(&ss.conn, ch); err != nil {
			return errReply(f.Ref, err)
		}
		return okReply(f.Ref)
	}
	// With since: the reply, then what was missed, then live; no gap, no
	// duplicate (hub.Resume).
	_, err = h.Resume(&ss.conn, ch, after, hub.WSText(okReply(f.Ref)), func() ([]*tidings.Message, error) {
		return ss.s.opt.Inbox.Replay(ctx, ch, after)
	})
	if err != nil {
		return errReply(f.Ref, err)
	}
	return nil
}

func (ss *session) unsubscribe(id tidings.Identity, f *ClientFrame) []byte {
	if f.Channel == "" {
		return errReply(f.Ref, tidings.Errorf(tidings.CodeBadRequest, "bad frame: channel is required"))
	}
	ss.s.opt.Hub.Unsubscribe(&ss.conn, resolve(id, f.Channel))
	return okReply(f.Ref)
}
