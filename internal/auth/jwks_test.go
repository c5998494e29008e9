package auth

import (
	"bytes"
	"context"
	"crypto/elliptic"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// jwksServer serves a JWK Set that a test can replace, and counts fetches.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	body    []byte
	status  int
	fetches atomic.Int64
}

// jwk is one public key to publish with its kid and alg.
type jwk struct {
	kid string
	alg jwkset.ALG
	pub any
}

func newJWKSServer(tb testing.TB, keys ...jwk) *jwksServer {
	tb.Helper()
	s := &jwksServer{status: http.StatusOK}
	s.set(tb, keys...)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		status, body := s.status, s.body
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	tb.Cleanup(s.Close)
	return s
}

// set replaces the published keys.
func (s *jwksServer) set(tb testing.TB, keys ...jwk) {
	tb.Helper()
	store := jwkset.NewMemoryStorage()
	for _, k := range keys {
		j, err := jwkset.NewJWKFromKey(k.pub, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: k.kid, ALG: k.alg, USE: jwkset.UseSig}})
		if err != nil {
			tb.Fatal(err)
		}
		if err := store.KeyWrite(context.Background(), j); err != nil {
			tb.Fatal(err)
		}
	}
	body, err := store.JSONPublic(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	s.mu.Lock()
	s.body = body
	s.mu.Unlock()
}

func (s *jwksServer) setStatus(status int) {
	s.mu.Lock()
	s.status = status
	s.mu.Unlock()
}

func TestJWKSRotation(t *testing.T) {
	k1, k2, k3 := rsaPair(t), ecPair(t, elliptic.P256()), edPair(t)
	srv := newJWKSServer(t, jwk{"k1", jwkset.AlgRS256, k1.pub}, jwk{"k2", jwkset.AlgES256, k2.pub})
	a := newAuth(t, Config{JWKSURL: srv.URL, HTTPClient: srv.Client()})

	tok1 := sign(t, jwt.SigningMethodRS256, k1.priv, "k1", userClaims("u1"))
	if id := mustAuth(t, a, tok1); id.User != "u1" {
		t.Fatalf("user %q", id.User)
	}
	mustAuth(t, a, sign(t, jwt.SigningMethodES256, k2.priv, "k2", userClaims("u2")))
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches for known kids, want 1 (the first)", n)
	}

	// The provider rotates: k1 and k2 are gone, k3 is new.
	srv.set(t, jwk{"k3", jwkset.AlgEdDSA, k3.pub})
	if id := mustAuth(t, a, sign(t, jwt.SigningMethodEdDSA, k3.priv, "k3", userClaims("u3"))); id.User != "u3" {
		t.Fatalf("user %q", id.User)
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches after rotation, want 2", n)
	}
	// The refresh replaced the set: a revoked key no longer verifies.
	wantRefused(t, a, tok1, "unknown token signing key")
}

func TestJWKSWrongKeyAndAlg(t *testing.T) {
	k1, ec := rsaPair(t), ecPair(t, elliptic.P256())
	srv := newJWKSServer(t, jwk{"k1", jwkset.AlgRS256, k1.pub}, jwk{"e1", "", ec.pub})
	a := newAuth(t, Config{JWKSURL: srv.URL, HTTPClient: srv.Client()})

	// Signed by another key under a known kid.
	wantRefused(t, a, sign(t, jwt.SigningMethodRS256, otherRSAPair(t).priv, "k1", userClaims("u1")), "invalid token signature")
	// An RSA key's kid on an ES256 token: the JWK's alg does not match.
	wantRefused(t, a, sign(t, jwt.SigningMethodES256, ec.priv, "k1", userClaims("u1")), "unknown token signing key")
	// An EC key without alg on an RS256 token: the key type does not match.
	wantRefused(t, a, sign(t, jwt.SigningMethodRS256, k1.priv, "e1", userClaims("u1")), "unknown token signing key")
	// HS256 is not allowed with only a JWKS, whatever the kid.
	wantRefused(t, a, sign(t, jwt.SigningMethodHS256, pemOf(t, k1.pub), "k1", userClaims("u1")), "token algorithm not allowed")
	// No kid: every key of the right type is tried.
	mustAuth(t, a, sign(t, jwt.SigningMethodRS256, k1.priv, "", userClaims("u1")))
	mustAuth(t, a, sign(t, jwt.SigningMethodES256, ec.priv, "", userClaims("u1")))
}

func TestJWKSUnknownKIDIsRateLimited(t *testing.T) {
	k1 := rsaPair(t)
	srv := newJWKSServer(t, jwk{"k1", jwkset.AlgRS256, k1.pub})
	a := newAuth(t, Config{JWKSURL: srv.URL, HTTPClient: srv.Client()})
	for range 5 {
		wantRefused(t, a, sign(t, jwt.SigningMethodRS256, k1.priv, "made-up", userClaims("u1")), "unknown token signing key")
	}
	// The first fetch, then one refresh for the unknown kid; the other
	// attempts are refused at once without a request.
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
}

func TestJWKSUnreachableAtStart(t *testing.T) {
	kp := rsaPair(t)
	for _, kid := range []string{"k1", ""} {
		t.Run("kid="+kid, func(t *testing.T) {
			srv := newJWKSServer(t, jwk{"k1", jwkset.AlgRS256, kp.pub})
			srv.setStatus(http.StatusServiceUnavailable)
			a := newAuth(t, Config{JWKSURL: srv.URL, HTTPClient: srv.Client()})
			srv.setStatus(http.StatusOK)
			// The first token fetches the keys that start could not get.
			mustAuth(t, a, sign(t, jwt.SigningMethodRS256, kp.priv, kid, userClaims("u1")))
			if n := srv.fetches.Load(); n != 2 {
				t.Fatalf("%d fetches, want 2", n)
			}
		})
	}
}

func TestJWKSDownAtStart(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more
	var logs bytes.Buffer
	a := newAuth(t, Config{JWKSURL: url, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "jwks fetch failed") {
		t.Fatalf("no warning logged for the failed first fetch: %q", logs.String())
	}
	wantRefused(t, a, sign(t, jwt.SigningMethodRS256, rsaPair(t).priv, "k1", userClaims("u1")), "unknown token signing key")
}

func TestJWKSAndStaticKey(t *testing.T) {
	static, rotating := rsaPair(t), otherRSAPair(t)
	srv := newJWKSServer(t, jwk{"r1", jwkset.AlgRS256, rotating.pub})
	a := newAuth(t, Config{JWTPublicKeyPEM: pemOf(t, static.pub), JWKSURL: srv.URL, HTTPClient: srv.Client()})
	mustAuth(t, a, sign(t, jwt.SigningMethodRS256, static.priv, "", userClaims("u1")))
	mustAuth(t, a, sign(t, jwt.SigningMethodRS256, rotating.priv, "r1", userClaims("u1")))
	mustAuth(t, a, sign(t, jwt.SigningMethodRS256, rotating.priv, "", userClaims("u1")))
}
