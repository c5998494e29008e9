// Package server wires a Tidings node together: configuration, store,
// broker, hub, transports and HTTP API. cmd/tidings and the end-to-end tests
// both run a node through it.
package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/internal/auth"
	"github.com/tidings/tidings/internal/broker/membroker"
	"github.com/tidings/tidings/internal/config"
	"github.com/tidings/tidings/internal/history"
	"github.com/tidings/tidings/internal/httpapi"
	"github.com/tidings/tidings/internal/hub"
	"github.com/tidings/tidings/internal/inbox"
	"github.com/tidings/tidings/internal/store/sqlitestore"
	"github.com/tidings/tidings/internal/transport/poll"
	"github.com/tidings/tidings/internal/transport/sse"
	"github.com/tidings/tidings/internal/transport/ws"
	"github.com/tidings/tidings/web"
)

// Server is one Tidings node.
type Server struct {
	cfg     *config.Config
	log     *slog.Logger
	node    string
	started time.Time

	store  tidings.Store
	broker tidings.Broker
	auth   *auth.Authenticator
	hub    *hub.Hub
	ws     *ws.Server
	sse    *sse.Server
	poll   *poll.Server
	inbox  *inbox.Service
	api    *httpapi.API

	httpSrv *http.Server
	ln      net.Listener
	fast    *fastListener

	closeOnce sync.Once
}

// New provisions a node from a validated config: it opens the store and
// builds every part, but starts nothing (Listen, then Run).
func New(ctx context.Context, cfg *config.Config, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	s := &Server{cfg: cfg, log: log, started: time.Now()}
	s.node, _ = os.Hostname()
	if s.node == "" {
		s.node = "tidings"
	}

	var err error
	s.auth, err = newAuthenticator(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	if cfg.Store != "sqlite" {
		return nil, fmt.Errorf("store %q: only the embedded sqlite store is available in this build", cfg.Store)
	}
	s.store, err = sqlitestore.Open(ctx, sqlitestore.Options{Path: cfg.DataDir + "/tidings.db", Logger: log})
	if err != nil {
		_ = s.auth.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	if cfg.Broker != "memory" {
		_ = s.store.Close()
		_ = s.auth.Close()
		return nil, fmt.Errorf("broker %q: only the memory broker is available in this build", cfg.Broker)
	}
	s.broker = membroker.New()
	s.hub = hub.New(hub.Options{MaxSubscriptions: cfg.MaxSubscriptions, MaxConnsPerUser: cfg.MaxConnsPerUser,
		MinWriteInterval: cfg.MinWriteInterval, Logger: log})
	s.inbox = inbox.New(s.store, s.broker, log)
	policies := map[string]history.Policy{}
	for name, ns := range cfg.Namespaces {
		if ns.HistorySize > 0 {
			policies[name] = history.Policy{Size: ns.HistorySize, TTL: ns.HistoryTTL}
		}
	}
	s.inbox.History = history.New(policies)

	rules := &auth.Rules{Default: cfg.ChannelsDefault, Namespaces: map[string]tidings.Policy{},
		SubscribeWebhookURL: cfg.SubscribeWebhookURL}
	for name, ns := range cfg.Namespaces {
		if ns.Policy != "" {
			rules.Namespaces[name] = ns.Policy
		}
	}
	userToken := func(r *http.Request) string { return auth.UserToken(r, cfg.TokenCookie) }
	s.ws = ws.New(ws.Options{
		Hub: s.hub, Auth: s.auth, Rules: rules, Inbox: s.inbox, Token: userToken,
		CheckOrigin: originChecker(cfg.AllowedOrigins), MaxFrameBytes: cfg.MaxFrameBytes, Logger: log,
	})
	s.sse = sse.New(sse.Options{Hub: s.hub, Auth: s.auth, Rules: rules, Inbox: s.inbox, Token: userToken,
		CheckOrigin: originChecker(cfg.AllowedOrigins), MaxSubscriptions: cfg.MaxSubscriptions, Logger: log})

	static, err := fs.Sub(web.Static, "static")
	if err != nil {
		return nil, err
	}
	var mint func(string) (string, error)
	if cfg.Dev {
		if cfg.JWTSecret == "" {
			return nil, errors.New("dev mode mints HS256 tokens and needs jwt_secret")
		}
		mint = func(user string) (string, error) {
			return auth.MintHS256([]byte(cfg.JWTSecret), user, cfg.DevTokenTTL, nil)
		}
	}
	s.api = httpapi.New(httpapi.Options{
		Inbox: s.inbox, Auth: s.auth,
		APIKeys: auth.NewKeys(cfg.APIKeys...), AdminKeys: auth.NewKeys(cfg.AdminKey),
		UserToken: userToken, APIKey: auth.APIKey, AdminKey: auth.AdminKey,
		MaxBodyBytes: cfg.MaxBodyBytes, Ready: s.ready, Stats: s.Stats,
		Dev: cfg.Dev, MintDev: mint, Logger: log, Prefix: cfg.PathPrefix,
		Static: http.FileServerFS(static), StaticFiles: staticFiles(static),
	})
	s.api.Handle("GET "+cfg.Path(cfg.WSPath), s.ws)
	s.api.Handle("GET "+cfg.Path(cfg.SSEPath), s.sse)
	s.poll = poll.New(poll.Options{Hub: s.hub, Auth: s.auth, Rules: rules, Inbox: s.inbox, Token: userToken,
		TimeoutMax: cfg.PollTimeoutMax, MaxChannels: cfg.MaxSubscriptions, Logger: log})
	s.api.Handle("GET "+cfg.Path(cfg.PollPath), s.poll)
	return s, nil
}

// staticFiles lists the demo page's files (not index.html, served at /).
func staticFiles(fsys fs.FS) []string {
	var out []string
	entries, _ := fs.ReadDir(fsys, ".")
	for _, e := range entries {
		if !e.IsDir() && e.Name() != "index.html" {
			out = append(out, e.Name())
		}
	}
	return out
}

func newAuthenticator(ctx context.Context, cfg *config.Config, log *slog.Logger) (*auth.Authenticator, error) {
	ac := auth.Config{JWKSURL: cfg.JWKSURL, WebhookURL: cfg.AuthWebhookURL, Logger: log}
	if cfg.JWTSecret != "" {
		ac.JWTSecret = []byte(cfg.JWTSecret)
	}
	if cfg.JWTPublicKey != "" {
		pem, err := os.ReadFile(cfg.JWTPublicKey)
		if err != nil {
			return nil, fmt.Errorf("jwt_public_key: %w", err)
		}
		ac.JWTPublicKeyPEM = pem
	}
	return auth.New(ctx, ac)
}

// originChecker allows requests without Origin (non-browser clients), an
// Origin matching the request's host, and the configured origins.
func originChecker(allowed []string) func(r *http.Request) bool {
	all := false
	set := map[string]bool{}
	for _, o := range allowed {
		if o == "*" {
			all = true
		}
		set[strings.ToLower(strings.TrimRight(o, "/"))] = true
	}
	return func(r *http.Request) bool {
		origin := r.Header.Get("Origin")
		if origin == "" || all {
			return true
		}
		if set[strings.ToLower(origin)] {
			return true
		}
		u, err := url.Parse(origin)
		return err == nil && strings.EqualFold(u.Host, r.Host)
	}
}

// readHeaderTimeout bounds the wait for a request's head.
const readHeaderTimeout = 10 * time.Second

// Listen binds the configured address (":0" picks a free port).
func (s *Server) Listen() error {
	// No TCP keep-alive probes: WebSocket pings, SSE keep-alives and the
	// HTTP idle timeout find dead peers, and the four setsockopt calls per
	// accepted connection are a twentieth of a connect's server CPU.
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp", s.cfg.Listen)
	if err != nil {
		return err
	}
	s.ln = ln
	// WebSocket upgrades and SSE streams that open a connection are served
	// beside net/http (fastpath.go); everything else goes through it.
	s.fast = newFastListener(ln, map[string]http.Handler{
		s.cfg.Path(s.cfg.WSPath): s.ws, s.cfg.Path(s.cfg.SSEPath): s.sse}, readHeaderTimeout, s.log)
	return nil
}

// Addr is the bound address, after Listen.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Handler is the node's HTTP handler.
func (s *Server) Handler() http.Handler { return s.api }

// Run serves until ctx is done, then drains: new connections are refused,
// HTTP requests in flight finish and every notification stored reaches the
// open connections, WebSocket clients are told to reconnect (close 1012
// with a jittered hint), the hub, broker and store close in that order.
func (s *Server) Run(ctx context.Context) error {
	if s.ln == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	brokerCtx, stopBroker := context.WithCancel(context.Background())
	brokerDone := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		close(ready)
		brokerDone <- s.broker.Run(brokerCtx, s.hub.Publish)
	}()
	<-ready
	s.hub.Start()
	pubCtx, stopPub := context.WithCancel(context.Background())
	pubDone := make(chan struct{})
	go func() { defer close(pubDone); s.inbox.Run(pubCtx) }()
	if err := s.ws.Start(); err != nil {
		stopPub()
		<-pubDone
		stopBroker()
		return fmt.Errorf("start websocket poller: %w", err)
	}
	if err := s.sse.Start(); err != nil {
		s.ws.Stop()
		stopPub()
		<-pubDone
		stopBroker()
		return fmt.Errorf("start sse poller: %w", err)
	}
	sweepCtx, stopSweep := context.WithCancel(context.Background())
	sweepDone := make(chan struct{})
	go func() { defer close(sweepDone); s.sweep(sweepCtx) }()

	s.httpSrv = &http.Server{Handler: s.api, ReadHeaderTimeout: readHeaderTimeout, IdleTimeout: s.cfg.IdleTimeout, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	serveErr := make(chan error, 1)
	go func() { serveErr <- s.httpSrv.Serve(s.fast) }()
	s.log.Info("tidings listening", "addr", s.ln.Addr().String(), "node", s.node, "dev", s.cfg.Dev)

	var err error
	select {
	case <-ctx.Done():
	case err = <-serveErr:
	}

	// Drain: no new connections; requests in flight finish and what they
	// stored reaches the open connections; then clients are told to come
	// back later, and the back ends close.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	jitter := func(d time.Duration) time.Duration { return time.Duration(rand.Int64N(int64(d))) }
	s.ws.Refuse()
	s.sse.Refuse()
	s.poll.Drain() // waiting polls answer now, new ones are refused
	_ = s.httpSrv.Shutdown(shutdownCtx)
	stopPub() // publishes what is committed but not yet published
	<-pubDone
	s.hub.Flush() // what coalescing keeps goes out before the closes
	s.ws.Drain(5*time.Second, jitter)
	s.sse.Drain(5*time.Second, jitter)
	stopSweep()
	<-sweepDone
	s.hub.Stop()
	s.ws.Stop()
	s.sse.Stop()
	stopBroker()
	<-brokerDone
	s.Close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// Close releases the store and the authenticator; idempotent. Run calls it.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		if err := s.store.Close(); err != nil {
			s.log.Error("close store", "err", err)
		}
		_ = s.auth.Close()
	})
}

// sweep pings WebSocket clients and closes the silent ones.
func (s *Server) sweep(ctx context.Context) {
	every := s.cfg.IdleTimeout / 4
	if every > s.cfg.PingInterval || every <= 0 {
		every = s.cfg.PingInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	lastPing := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			var ping map[hub.Kind][]byte
			if now.Sub(lastPing) >= s.cfg.PingInterval-every/2 {
				ping = map[hub.Kind][]byte{hub.KindWS: hub.WSPing, hub.KindSSE: sse.KeepAlive, hub.KindSSEMulti: sse.KeepAlive}
				lastPing = now
			}
			idled, expired := s.hub.Sweep(now, s.cfg.IdleTimeout, ping)
			if idled > 0 {
				s.log.Info("closed idle connections", "count", idled)
			}
			if expired > 0 {
				s.log.Info("closed connections whose token expired", "count", expired)
			}
		}
	}
}

func (s *Server) ready(ctx context.Context) error { return s.store.Ping(ctx) }

// Stats is GET /v1/admin/stats.
func (s *Server) Stats() any {
	hs := s.hub.Stats()
	wsN, sseN := s.ws.Count(), s.sse.Count()
	return map[string]any{
		"node":         s.node,
		"uptime_s":     int64(time.Since(s.started).Seconds()),
		"connections":  map[string]int64{"total": hs.Connections, "ws": wsN, "sse": sseN, "poll": s.poll.Count()},
		"users_online": hs.Users,
		"channels":     hs.Channels,
		"goroutines":   runtime.NumGoroutine(),
		"published":    hs.Published,
		"deliveries":   hs.Deliveries,
	}
}
