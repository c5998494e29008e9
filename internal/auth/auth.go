// Package auth turns credentials into identities and decides who may
// subscribe to what.
//
// A user credential is either a JWT signed with a configured key (HS256
// secret, RS256/ES256/EdDSA public key, or a JWKS endpoint with rotating
// keys) or an opaque token that the app's auth webhook vouches for (seed
// 003). Publisher and admin credentials are static keys (Keys). Channel
// rules (Rules) decide subscriptions once a user is known.
//
// Every refusal is a *tidings.Error with a stable code, so the transports
// translate it to a frame or an HTTP status without looking at its text.
package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tidings/tidings"
)

// MaxTokenLen bounds a presented token in bytes. Real JWTs, even with a long
// channels claim, stay far below it; the bound keeps a hostile client from
// making the server parse or forward megabytes.
const MaxTokenLen = 16 << 10

// DefaultHTTPTimeout bounds a JWKS or webhook request when Config.HTTPClient
// is nil: authentication sits on the connect path of every client, so a
// slow app backend must not hold connections open for long.
const DefaultHTTPTimeout = 5 * time.Second

// minSecretLen is the HS256 secret length below which New warns (RFC 7518
// §3.2 asks for a key at least as long as the hash: 32 bytes).
const minSecretLen = 32

// defaultClient is shared by every Authenticator and Rules without their
// own client, so connections to the app backend are reused.
var defaultClient = &http.Client{Timeout: DefaultHTTPTimeout}

// Config of the Authenticator; zero values disable a method.
type Config struct {
	JWTSecret       []byte       // HS256 key (raw bytes)
	JWTPublicKeyPEM []byte       // PEM of an RSA, ECDSA (P-256) or Ed25519 public key: RS256 / ES256 / EdDSA
	JWKSURL         string       // JWKS endpoint; keys cached, refreshed on unknown kid (rate-limited) and periodically
	WebhookURL      string       // auth webhook: POST {"token":"..."} -> {"uid":...}
	HTTPClient      *http.Client // for JWKS and webhook; nil = a client with a 5 s timeout
	Logger          *slog.Logger // nil = slog.Default()
}

// Authenticator checks user tokens. It is safe for concurrent use.
type Authenticator struct {
	verifier *jwtVerifier // nil when no JWT key is configured
	jwks     *jwksKeys    // nil when no JWKS URL is configured
	webhook  *webhook     // nil when no webhook is configured
	log      *slog.Logger
	close    sync.Once
}

// New checks cfg and builds an Authenticator. With a JWKS URL it fetches the
// key set once; an unreachable endpoint is logged, not fatal, because the
// server must be able to start before (or without) its identity provider:
// the keys are fetched again on the first token with an unknown kid and
// periodically. ctx only carries values for that first fetch; Close stops
// the background refresh.
func New(ctx context.Context, cfg Config) (*Authenticator, error) {
	if len(cfg.JWTSecret) == 0 && len(cfg.JWTPublicKeyPEM) == 0 && cfg.JWKSURL == "" && cfg.WebhookURL == "" {
		return nil, errors.New("auth: no authentication method configured (need a JWT secret, a JWT public key, a JWKS URL or an auth webhook URL)")
	}
	a := &Authenticator{log: cfg.Logger}
	if a.log == nil {
		a.log = slog.Default()
	}
	client := cfg.HTTPClient
	if client == nil {
		client = defaultClient
	}
	if n := len(cfg.JWTSecret); n > 0 && n < minSecretLen {
		// Allowed, since apps may already use such a secret, but an HS256
		// key that short can be brute-forced offline from one token.
		a.log.WarnContext(ctx, "JWT secret is short; use at least 32 random bytes", "bytes", n)
	}
	var pub any
	if len(cfg.JWTPublicKeyPEM) > 0 {
		var err error
		if pub, err = parsePublicKeyPEM(cfg.JWTPublicKeyPEM); err != nil {
			return nil, fmt.Errorf("auth: JWT public key: %w", err)
		}
	}
	if cfg.WebhookURL != "" {
		w, err := newWebhook(cfg.WebhookURL, client)
		if err != nil {
			return nil, fmt.Errorf("auth: webhook: %w", err)
		}
		a.webhook = w
	}
	if cfg.JWKSURL != "" {
		j, err := newJWKSKeys(ctx, cfg.JWKSURL, client, a.log)
		if err != nil {
			return nil, fmt.Errorf("auth: JWKS: %w", err)
		}
		a.jwks = j
	}
	if len(cfg.JWTSecret) > 0 || pub != nil || a.jwks != nil {
		a.verifier = newJWTVerifier(cfg.JWTSecret, pub, a.jwks)
	}
	return a, nil
}

// Authenticate returns the identity a token stands for.
//
// A JWT of a configured key decides alone: if its signature is right but it
// is expired, not yet valid or has no subject, it is refused without asking
// the webhook, so a client learns why ("token expired") and refreshes. Any
// other token (not a JWT, a JWT of another key or algorithm) goes to the
// webhook when there is one.
func (a *Authenticator) Authenticate(ctx context.Context, token string) (tidings.Identity, error) {
	if token == "" {
		return tidings.Identity{}, refuse("no token", nil)
	}
	if len(token) > MaxTokenLen {
		return tidings.Identity{}, refuse("token too long", fmt.Errorf("%d bytes, limit %d", len(token), MaxTokenLen))
	}
	if a.verifier == nil {
		return a.checkWebhook(ctx, token, nil)
	}
	id, jerr, final := a.verifier.verify(ctx, token)
	if jerr == nil {
		return id, nil
	}
	if a.webhook == nil || final {
		return tidings.Identity{}, jerr
	}
	return a.checkWebhook(ctx, token, jerr)
}

// checkWebhook asks the webhook; jwtErr, when the token was first tried as a
// JWT, joins the webhook's cause so logs show both reasons while the client
// gets the webhook's answer.
func (a *Authenticator) checkWebhook(ctx context.Context, token string, jwtErr *tidings.Error) (tidings.Identity, error) {
	id, werr := a.webhook.check(ctx, token)
	if werr == nil {
		return id, nil
	}
	if jwtErr != nil {
		werr.Err = errors.Join(werr.Err, fmt.Errorf("as JWT: %w", jwtErr))
	}
	return tidings.Identity{}, werr
}

// Close stops the background JWKS refresh. It is idempotent; Authenticate
// keeps working afterwards with the keys already fetched.
func (a *Authenticator) Close() error {
	a.close.Do(func() {
		if a.jwks != nil {
			a.jwks.close()
		}
	})
	return nil
}

// refuse makes the error every rejected credential gets.
func refuse(msg string, cause error) *tidings.Error {
	return &tidings.Error{Code: tidings.CodeNotAuthenticated, Msg: msg, Err: cause}
}

// validUser reports whether a user id taken from a token can be used: it
// must make a valid personal channel ("user:<id>"), or the user could never
// receive anything.
func validUser(user string) bool {
	return user != "" && strings.TrimSpace(user) == user && tidings.ValidChannel(tidings.PersonalChannel(user))
}
