// Package httpapi serves the HTTP side of Tidings: the publisher API, the
// user inbox API, the operator endpoints and the dev-mode helpers
// (docs/API.md). Errors are translated to {"code","msg"} with a fitting
// status here, once.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/internal/inbox"
)

// Authenticator turns a user token into an identity.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (tidings.Identity, error)
}

// KeySet checks a presented key (API keys, admin key).
type KeySet interface{ Valid(presented string) bool }

// Options of the API.
type Options struct {
	Inbox        *inbox.Service
	Auth         Authenticator
	APIKeys      KeySet
	AdminKeys    KeySet
	UserToken    func(r *http.Request) string // token of a user request (query, bearer, cookie)
	APIKey       func(r *http.Request) string // key of a publisher request
	AdminKey     func(r *http.Request) string // key of an operator request
	MaxBodyBytes int64
	Ready        func(ctx context.Context) error // nil error = ready
	Stats        func() any                      // GET /v1/admin/stats
	// Dev mode: mint tokens for the demo page.
	Dev         bool
	MintDev     func(user string) (string, error)
	Logger      *slog.Logger
	Prefix      string       // path prefix, "" or "/x"
	Static      http.Handler // the demo page, at the prefix root
	StaticFiles []string     // the files Static serves besides index.html
}

// API is the HTTP handler.
type API struct {
	opt Options
	mux *http.ServeMux
	log *slog.Logger
}

// New builds the routes.
func New(opt Options) *API {
	if opt.MaxBodyBytes <= 0 {
		opt.MaxBodyBytes = 1 << 20
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	a := &API{opt: opt, mux: http.NewServeMux(), log: opt.Logger}
	p := opt.Prefix
	a.mux.HandleFunc("GET "+p+"/healthz", a.healthz)
	a.mux.HandleFunc("GET "+p+"/readyz", a.readyz)
	a.mux.HandleFunc("POST "+p+"/v1/notifications", a.publisher(a.sendNotifications))
	a.mux.HandleFunc("POST "+p+"/v1/publish", a.publisher(a.publish))
	a.mux.HandleFunc("POST "+p+"/v1/mesh/publish", a.publisher(a.meshPublish))
	a.mux.HandleFunc("GET "+p+"/v1/me/notifications", a.user(a.listInbox))
	a.mux.HandleFunc("GET "+p+"/v1/me/unread", a.user(a.unread))
	a.mux.HandleFunc("POST "+p+"/v1/me/read", a.user(a.markRead))
	a.mux.HandleFunc("DELETE "+p+"/v1/me/notifications/{id}", a.user(a.deleteNotification))
	a.mux.HandleFunc("GET "+p+"/v1/admin/stats", a.admin(a.stats))
	a.mux.HandleFunc("GET "+p+"/v1/dev/config", a.devConfig)
	a.mux.HandleFunc("GET "+p+"/v1/dev/token", a.devOnly(a.devToken))
	a.mux.HandleFunc("POST "+p+"/v1/dev/notify", a.devOnly(a.user(a.devNotify)))
	// Profiles for the operator, behind the admin key.
	a.mux.HandleFunc("GET "+p+"/debug/pprof/", a.admin(pprof.Index))
	a.mux.HandleFunc("GET "+p+"/debug/pprof/profile", a.admin(pprof.Profile))
	a.mux.HandleFunc("GET "+p+"/debug/pprof/trace", a.admin(pprof.Trace))
	a.mux.HandleFunc("GET "+p+"/debug/pprof/symbol", a.admin(pprof.Symbol))
	if opt.Static != nil {
		// The demo page's files live at the root, one level deep; only
		// those are served (anything else is a JSON 404).
		static := http.StripPrefix(p, opt.Static)
		a.mux.Handle("GET "+p+"/{$}", static)
		for _, f := range opt.StaticFiles {
			a.mux.Handle("GET "+p+"/"+f, static)
		}
	}
	return a
}

// Handle registers an extra handler (transports) on the API's mux.
func (a *API) Handle(pattern string, h http.Handler) { a.mux.Handle(pattern, h) }

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// A wrong method on a known path: the mux answers 405 in plain text;
	// catch it to keep every answer JSON.
	if _, pattern := a.mux.Handler(r); pattern != "" {
		a.mux.ServeHTTP(w, r) // sets the path values the handler reads
		return
	}
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
		if m == r.Method {
			continue
		}
		if _, p := a.mux.Handler(&http.Request{Method: m, URL: r.URL, Host: r.Host}); p != "" {
			a.writeError(w, tidings.Errorf(tidings.CodeMethodNotAllowed, "method %s not allowed on %s", r.Method, r.URL.Path))
			return
		}
	}
	a.notFound(w, r)
}

func (a *API) notFound(w http.ResponseWriter, r *http.Request) {
	a.writeError(w, tidings.Errorf(tidings.CodeNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path))
}

// writeJSON answers v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (a *API) writeError(w http.ResponseWriter, err error) {
	e := tidings.ErrorOf(err)
	if e.Code == tidings.CodeInternal || e.Code == tidings.CodeUnavailable {
		a.log.Error("request failed", "code", int(e.Code), "msg", e.Msg, "err", e.Err)
	}
	if e.Code == tidings.CodeNotAuthenticated {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tidings"`)
	}
	writeJSON(w, e.Code.HTTPStatus(), e)
}

// readBody reads the whole body within the size limit.
func (a *API) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.opt.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tidings.Errorf(tidings.CodeTooLarge, "body larger than %d bytes", mbe.Limit)
		}
		return nil, &tidings.Error{Code: tidings.CodeBadRequest, Msg: "could not read body", Err: err}
	}
	return body, nil
}

type identityKey struct{}

func identityOf(r *http.Request) tidings.Identity {
	id, _ := r.Context().Value(identityKey{}).(tidings.Identity)
	return id
}

// publisher guards an endpoint with the API keys. A valid user token in
// place of a key is a 403 (valid credentials, wrong right), anything else
// a 401.
func (a *API) publisher(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key := a.opt.APIKey(r)
		if key != "" && a.opt.APIKeys.Valid(key) {
			h(w, r)
			return
		}
		if key == "" {
			a.writeError(w, tidings.Errorf(tidings.CodeNotAuthenticated, "API key required (Authorization: Bearer or X-API-Key)"))
			return
		}
		if _, err := a.opt.Auth.Authenticate(r.Context(), key); err == nil {
			a.writeError(w, tidings.Errorf(tidings.CodeForbidden, "a user token cannot publish; use an API key"))
			return
		}
		a.writeError(w, tidings.Errorf(tidings.CodeNotAuthenticated, "invalid API key"))
	}
}

// user guards an endpoint with a user token.
func (a *API) user(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok := a.opt.UserToken(r)
		if tok == "" {
			a.writeError(w, tidings.Errorf(tidings.CodeNotAuthenticated, "user token required"))
			return
		}
		id, err := a.opt.Auth.Authenticate(r.Context(), tok)
		if err != nil {
			a.writeError(w, err)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, id)))
	}
}

// admin guards an endpoint with the admin key.
func (a *API) admin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key := a.opt.AdminKey(r)
		if key == "" {
			a.writeError(w, tidings.Errorf(tidings.CodeNotAuthenticated, "admin key required (Authorization: Bearer or X-Admin-Key)"))
			return
		}
		if !a.opt.AdminKeys.Valid(key) {
			if a.opt.APIKeys.Valid(key) {
				a.writeError(w, tidings.Errorf(tidings.CodeForbidden, "an API key is not the admin key"))
				return
			}
			a.writeError(w, tidings.Errorf(tidings.CodeNotAuthenticated, "invalid admin key"))
			return
		}
		h(w, r)
	}
}

func (a *API) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (a *API) readyz(w http.ResponseWriter, r *http.Request) {
	if a.opt.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := a.opt.Ready(ctx); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "code": tidings.CodeUnavailable, "msg": err.Error()})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (a *API) stats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.opt.Stats())
}

func parseSeq(s, name string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, tidings.Errorf(tidings.CodeBadRequest, "%s: %q is not a cursor", name, s)
	}
	return n, nil
}

func parseBool(s string) bool {
	switch strings.ToLower(s) {
	case "1", "true", "yes", "on":
		return true
	}
	return false
}
