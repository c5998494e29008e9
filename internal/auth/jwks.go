package auth

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// JWKS refresh policy.
//
// Keys are refreshed periodically so a revoked key stops working without a
// restart, and at once when a token names an unknown kid so a rotated key
// starts working without waiting for the period. Unknown-kid refreshes are
// rate-limited because anyone can send a token with a made-up kid; one
// every jwksUnknownKIDEvery costs the identity provider nothing and still
// picks up a rotation within seconds.
const (
	jwksRefreshInterval = 15 * time.Minute
	jwksUnknownKIDEvery = 10 * time.Second
	// jwksWaitMax bounds how long one Authenticate call may wait for the
	// rate limiter plus the refresh request it then makes. A caller whose
	// turn is further away is refused at once rather than kept waiting.
	jwksWaitMax = 5 * time.Second
	// jwksHTTPTimeout bounds the first fetch and each periodic refresh.
	jwksHTTPTimeout = 10 * time.Second
)

// refreshProbeKID is a kid no real key uses. Reading it from an empty key
// set makes the storage run its rate-limited refresh: the only way it
// exposes to retry a first fetch that failed, needed for tokens without a
// kid, which never trigger the unknown-kid refresh themselves.
const refreshProbeKID = "\x00tidings-refresh-probe"

// jwksKeys is a cached, self-refreshing JWK Set. The HTTP fetching,
// caching and refresh policy come from keyfunc/jwkset; which key may verify
// which token is decided here (see usableKey), over the storage directly,
// so that a token with a kid and one without go through the same checks.
type jwksKeys struct {
	store  jwkset.Storage
	cancel context.CancelFunc
}

func newJWKSKeys(ctx context.Context, rawURL string, client *http.Client, log *slog.Logger) (*jwksKeys, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("URL %q is not an absolute http(s) URL", rawURL)
	}
	// The refresh goroutine lives until Close, not until the caller's
	// context ends: New's context is usually a start-up one.
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	noStartError := true
	kf, err := keyfunc.NewDefaultOverrideCtx(rctx, []string{rawURL}, keyfunc.Override{
		Client:                    client,
		HTTPTimeout:               jwksHTTPTimeout,
		NoErrorReturnFirstHTTPReq: &noStartError,
		RateLimitWaitMax:          jwksWaitMax,
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(ctx context.Context, err error) {
				log.WarnContext(ctx, "jwks fetch failed; will retry", "url", u, "err", err)
			}
		},
		RefreshInterval:   jwksRefreshInterval,
		RefreshUnknownKID: rate.NewLimiter(rate.Every(jwksUnknownKIDEvery), 1),
	})
	if err != nil {
		cancel()
		return nil, err
	}
	return &jwksKeys{store: kf.Storage(), cancel: cancel}, nil
}

func (j *jwksKeys) close() { j.cancel() }

// keys returns the keys of the set that may verify t: the one its kid
// names, or, for a token without kid, every key that fits its algorithm.
func (j *jwksKeys) keys(ctx context.Context, t *jwt.Token) ([]any, error) {
	alg := t.Method.Alg()
	if raw, ok := t.Header[jwkset.HeaderKID]; ok {
		kid, ok := raw.(string)
		if !ok {
			return nil, errors.New("kid is not a string")
		}
		jwk, err := j.store.KeyRead(ctx, kid) // refreshes on an unknown kid
		if err != nil {
			return nil, err
		}
		k, err := usableKey(jwk, alg)
		if err != nil {
			return nil, fmt.Errorf("kid %q: %w", kid, err)
		}
		return []any{k}, nil
	}
	all, err := j.store.KeyReadAll(ctx)
	if err == nil && len(all) == 0 {
		_, _ = j.store.KeyRead(ctx, refreshProbeKID)
		all, err = j.store.KeyReadAll(ctx)
	}
	if err != nil {
		return nil, err
	}
	var keys []any
	for _, jwk := range all {
		if k, err := usableKey(jwk, alg); err == nil {
			keys = append(keys, k)
		}
	}
	return keys, nil
}

// usableKey returns the public key of jwk if it may verify a signature of
// alg: it is meant for signatures ("use" absent or "sig"), and its "alg",
// when given, is alg. The key type is checked by the caller (keyFits).
func usableKey(jwk jwkset.JWK, alg string) (any, error) {
	m := jwk.Marshal()
	if m.USE != "" && m.USE != jwkset.UseSig {
		return nil, fmt.Errorf("key use %q is not %q", m.USE, jwkset.UseSig)
	}
	if m.ALG != "" && m.ALG.String() != alg {
		return nil, fmt.Errorf("key alg %q does not match token alg %q", m.ALG, alg)
	}
	key := jwk.Key()
	if pk, ok := key.(interface{ Public() crypto.PublicKey }); ok {
		key = pk.Public() // a set that carries private keys: use their public half
	}
	return key, nil
}
