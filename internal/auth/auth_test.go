package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/tidings/tidings"
)

// testSecret is the HS256 key most tests configure.
var testSecret = []byte("0123456789abcdef0123456789abcdef")

// testNow is the fixed clock of tests that check exp and nbf exactly.
var testNow = time.Unix(1_800_000_000, 0)

// keyPair is a private key and its public half.
type keyPair struct {
	priv any
	pub  any
}

// Key generation is slow (RSA above all), so each kind is made once per
// test binary and shared; tests only read them.
var (
	rsaKeys  = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })
	rsaKeys2 = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })
)

func rsaPair(tb testing.TB) keyPair {
	tb.Helper()
	k, err := rsaKeys()
	if err != nil {
		tb.Fatal(err)
	}
	return keyPair{k, &k.PublicKey}
}

func otherRSAPair(tb testing.TB) keyPair {
	tb.Helper()
	k, err := rsaKeys2()
	if err != nil {
		tb.Fatal(err)
	}
	return keyPair{k, &k.PublicKey}
}

func ecPair(tb testing.TB, curve elliptic.Curve) keyPair {
	tb.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return keyPair{k, &k.PublicKey}
}

func edPair(tb testing.TB) keyPair {
	tb.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return keyPair{priv, pub}
}

// pemOf encodes a public key as a PKIX "PUBLIC KEY" PEM block.
func pemOf(tb testing.TB, pub any) []byte {
	tb.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// sign makes a token of method over claims, with header kid when not "".
func sign(tb testing.TB, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	tb.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// userClaims are claims for user valid an hour around testNow.
func userClaims(user string) jwt.MapClaims {
	return jwt.MapClaims{"sub": user, "iat": testNow.Unix(), "exp": testNow.Add(time.Hour).Unix()}
}

// quietLogger drops log output; tests check behaviour, not log lines.
func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// newAuth builds an Authenticator whose JWT clock is testNow and closes it
// when the test ends.
func newAuth(tb testing.TB, cfg Config) *Authenticator {
	tb.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	a, err := New(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = a.Close() })
	if a.verifier != nil {
		a.verifier.now = func() time.Time { return testNow }
	}
	if a.webhook != nil {
		a.webhook.now = func() time.Time { return testNow }
	}
	return a
}

// mustAuth authenticates token and fails the test on refusal.
func mustAuth(tb testing.TB, a *Authenticator, token string) tidings.Identity {
	tb.Helper()
	id, err := a.Authenticate(context.Background(), token)
	if err != nil {
		tb.Fatalf("Authenticate: %v", err)
	}
	return id
}

// wantRefused checks err is a *tidings.Error with code and a Msg
// containing msg.
func wantCode(tb testing.TB, err error, code tidings.Code, msg string) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("want %v error %q, got nil", code, msg)
	}
	var e *tidings.Error
	if !errors.As(err, &e) {
		tb.Fatalf("want *tidings.Error, got %T: %v", err, err)
	}
	if e.Code != code || !strings.Contains(e.Msg, msg) {
		tb.Fatalf("want code %v msg %q, got code %v msg %q (%v)", code, msg, e.Code, e.Msg, err)
	}
}

func wantRefused(tb testing.TB, a *Authenticator, token, msg string) {
	tb.Helper()
	id, err := a.Authenticate(context.Background(), token)
	if err == nil {
		tb.Fatalf("token accepted as %+v, want refusal %q", id, msg)
	}
	wantCode(tb, err, tidings.CodeNotAuthenticated, msg)
}

func TestNewNeedsAMethod(t *testing.T) {
	if _, err := New(context.Background(), Config{}); err == nil {
		t.Fatal("New with no method: want an error")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(edPair(t).priv)
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]Config{
		"not PEM":       {JWTPublicKeyPEM: []byte("hello")},
		"private key":   {JWTPublicKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})},
		"P-384 key":     {JWTPublicKeyPEM: pemOf(t, ecPair(t, elliptic.P384()).pub)},
		"small RSA key": {JWTPublicKeyPEM: pemOf(t, &small.PublicKey)},
		"webhook URL":   {WebhookURL: "not a url"},
		"JWKS URL":      {JWKSURL: "ftp://example.invalid/jwks"},
	} {
		cfg.Logger = quietLogger()
		if a, err := New(context.Background(), cfg); err == nil {
			_ = a.Close()
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
}

func TestPKCS1AndCertificatePEM(t *testing.T) {
	kp := rsaPair(t)
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(kp.pub.(*rsa.PublicKey))})
	a := newAuth(t, Config{JWTPublicKeyPEM: pkcs1})
	if id := mustAuth(t, a, sign(t, jwt.SigningMethodRS256, kp.priv, "", userClaims("u1"))); id.User != "u1" {
		t.Fatalf("user %q", id.User)
	}
}

func TestEmptyAndLongToken(t *testing.T) {
	a := newAuth(t, Config{JWTSecret: testSecret})
	wantRefused(t, a, "", "no token")
	wantRefused(t, a, strings.Repeat("a", MaxTokenLen+1), "token too long")
}

func TestCloseIsIdempotent(t *testing.T) {
	a := newAuth(t, Config{JWTSecret: testSecret})
	for range 3 {
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
	}
	mustAuth(t, a, sign(t, jwt.SigningMethodHS256, testSecret, "", userClaims("u1")))
}
