// Package ws is the WebSocket transport of Tidings (docs/PROTOCOL.md).
//
// The HTTP upgrade is answered by the standard net/http server; the
// connection is then handed to an epoll poller (nbio), so an idle
// connection costs no goroutine and no read buffer: reading happens on the
// poller's goroutines, frames are handled on a shared pool with per
// connection ordering, and writes go through the hub's workers.
package ws

import (
	"context"
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

	"github.com/lesismal/nbio"
	"github.com/lesismal/nbio/nbhttp"
	"github.com/lesismal/nbio/nbhttp/websocket"

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

var errNotOnPoller = errors.New("websocket connection not on the poller")

// Server upgrades requests and serves WebSocket connections.
type Server struct {
	opt      Options
	engine   *nbhttp.Engine
	upgrader *websocket.Upgrader
	log      *slog.Logger
	count    atomic.Int64
	draining atomic.Bool
	gate     gate
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
	installLogger(opt.Logger)
	s.engine = nbhttp.NewEngine(nbhttp.Config{
		Name:                    "tidings-ws",
		NPoller:                 runtime.GOMAXPROCS(0),
		ReleaseWebsocketPayload: true,
		MaxWriteBufferSize:      opt.MaxWriteBytes,
	})
	u := websocket.NewUpgrader()
	u.Engine = s.engine
	u.MessageLengthLimit = opt.MaxFrameBytes
	// No read deadline per connection (the library's default is 120 s, a
	// timer per connection reset on every frame): the hub's sweep closes
	// connections silent past idle_timeout, whatever it is set to.
	u.KeepaliveTime = 0
	u.CheckOrigin = func(*http.Request) bool { return true } // checked before Upgrade, with a JSON answer
	u.OnMessage(s.onMessage)
	u.OnClose(s.onClose)
	u.SetPingHandler(func(c *websocket.Conn, data string) {
		if ss := s.gate.session(c); ss != nil {
			ss.hc.Touch()
		}
		_ = c.WriteMessage(websocket.PongMessage, []byte(data))
	})
	u.SetPongHandler(func(c *websocket.Conn, _ string) {
		if ss := s.gate.session(c); ss != nil {
			ss.hc.Touch()
		}
	})
	s.upgrader = u
	return s
}

// Start starts the poller goroutines (no listener: connections arrive
// through ServeHTTP).
//
// An engine stopped before its pollers run never stops (a flaw of the
// poller library), so Start returns only once they run.
func (s *Server) Start() error {
	if err := s.engine.Start(); err != nil {
		return err
	}
	if err := netpoll.WaitStarted(s.engine.Engine, 5*time.Second); err != nil {
		s.log.Warn("websocket: could not check that the poller runs; stopping right away may hang", "err", err)
	}
	return nil
}

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
	var wsc *websocket.Conn
	nbc, err := netpoll.Transfer(func() (*nbio.Conn, error) {
		var err error
		if wsc, err = s.upgrader.UpgradeAndTransferConnToPoller(w, r, nil); err != nil {
			return nil, err
		}
		if nbc, ok := wsc.Conn.(*nbio.Conn); ok {
			return nbc, nil
		}
		_ = wsc.Close()
		return nil, errNotOnPoller
	})
	if errors.Is(err, errNotOnPoller) {
		s.log.Error(err.Error(), "remote", r.RemoteAddr)
		return
	}
	if err != nil {
		s.log.Debug("websocket upgrade failed", "err", err, "remote", r.RemoteAddr)
		return
	}
	ss := &session{s: s, wsc: wsc, nbc: nbc}
	ss.hc = s.opt.Hub.Attach(hub.KindWS, ss)
	s.count.Add(1)
	// Bind before the session is visible to frame handlers: a frame sent
	// right after the 101 then finds the connection authenticated.
	var bindErr error
	if id != nil {
		bindErr = ss.bind(*id, since)
	}
	wsc.SetSession(ss)
	s.gate.open(wsc)
	if bindErr != nil {
		ss.send(errReply(nil, bindErr))
		ss.Close(1008, tidings.ErrorOf(bindErr).Msg)
	}
}

func (s *Server) token(r *http.Request) string {
	if s.opt.Token == nil {
		return ""
	}
	return s.opt.Token(r)
}

func (s *Server) onClose(c *websocket.Conn, _ error) {
	ss := s.gate.session(c)
	if ss == nil {
		return
	}
	ss.closeOnce.Do(func() {
		s.opt.Hub.Detach(ss.hc)
		s.count.Add(-1)
	})
}

func (s *Server) onMessage(c *websocket.Conn, mt websocket.MessageType, data []byte) {
	ss := s.gate.session(c)
	if ss == nil {
		return
	}
	ss.hc.Touch()
	if mt != websocket.TextMessage {
		ss.send(errReply(nil, tidings.Errorf(tidings.CodeBadRequest, "bad frame: only text frames are accepted")))
		return
	}
	f, err := DecodeFrame(data)
	if err != nil {
		ss.send(errReply(f.Ref, err))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opt.OpTimeout)
	defer cancel()
	ss.handle(ctx, &f)
}

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
	s   *Server
	wsc *websocket.Conn
	nbc *nbio.Conn
	hc  *hub.Conn

	mu sync.Mutex
	id *tidings.Identity // nil until authenticated

	closeOnce sync.Once
}

// Write implements hub.Sink: several frames, one vectored write. nbio
// buffers what the socket does not take and closes the peer past
// MaxWriteBytes.
func (ss *session) Write(bufs [][]byte) error {
	if len(bufs) == 1 {
		_, err := ss.nbc.Write(bufs[0])
		return err
	}
	_, err := ss.nbc.Writev(bufs)
	return err
}

// Close implements hub.Sink.
func (ss *session) Close(code int, reason string) {
	_, _ = ss.nbc.Write(hub.WSClose(code, reason))
	_ = ss.wsc.Close()
}

// send queues a reply behind whatever the hub is delivering to this
// connection, so replies and events keep their order.
func (ss *session) send(payload []byte) { ss.s.opt.Hub.Send(ss.hc, hub.WSText(payload)) }

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
	if err := h.Authenticate(ss.hc, id.User); err != nil {
		return err
	}
	personal := tidings.PersonalChannel(id.User)
	var err error
	if since != nil {
		_, err = h.Resume(ss.hc, personal, *since, nil, func() ([]*tidings.Message, error) {
			ctx, cancel := context.WithTimeout(context.Background(), ss.s.opt.OpTimeout)
			defer cancel()
			return ss.s.opt.Inbox.Replay(ctx, personal, *since)
		})
	} else {
		_, err = h.Subscribe(ss.hc, personal)
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
		ss.s.opt.Hub.Send(ss.hc, hub.WSText([]byte("pong")))
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
		if _, err := h.Subscribe(ss.hc, ch); err != nil {
			return errReply(f.Ref, err)
		}
		return okReply(f.Ref)
	}
	// With since: the reply, then what was missed, then live; no gap, no
	// duplicate (hub.Resume).
	_, err = h.Resume(ss.hc, ch, after, hub.WSText(okReply(f.Ref)), func() ([]*tidings.Message, error) {
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
	ss.s.opt.Hub.Unsubscribe(ss.hc, resolve(id, f.Channel))
	return okReply(f.Ref)
}
