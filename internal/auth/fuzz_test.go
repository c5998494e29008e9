package auth

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/tidings/tidings"
)

// FuzzAuthenticate feeds arbitrary token text to an Authenticator with an
// HS256 secret and an RSA key. Nothing may panic, and nothing the fuzzer
// makes may authenticate: it cannot forge a signature, so an accepted
// token would mean a check was skipped.
func FuzzAuthenticate(f *testing.F) {
	kp := rsaPair(f)
	a := newAuth(f, Config{JWTSecret: testSecret, JWTPublicKeyPEM: pemOf(f, kp.pub)})
	// A valid token first, so the HS256 fast path knows the usual header
	// and the fuzzer reaches it too.
	mustAuth(f, a, sign(f, jwt.SigningMethodHS256, testSecret, "", userClaims("u0")))
	for _, seed := range []string{
		"",
		"a.b.c",
		"eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1MSJ9.",
		noneToken(`{"alg":"HS256"}`, `{"sub":"u1"}`),
		sign(f, jwt.SigningMethodHS256, []byte("not the secret"), "", userClaims("u1")),
		sign(f, jwt.SigningMethodHS256, pemOf(f, kp.pub), "", userClaims("u1")),
		sign(f, jwt.SigningMethodRS256, otherRSAPair(f).priv, "k", userClaims("u1")),
		// Signed right but expired: mutations break the signature.
		sign(f, jwt.SigningMethodHS256, testSecret, "", jwt.MapClaims{"sub": "u1", "exp": testNow.Add(-time.Hour).Unix()}),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		id, err := a.Authenticate(context.Background(), token)
		if err == nil {
			t.Fatalf("random token %q authenticated as %+v", token, id)
		}
		var e *tidings.Error
		if !errors.As(err, &e) || e.Code != tidings.CodeNotAuthenticated || e.Msg == "" {
			t.Fatalf("refusal %v is not a not-authenticated *tidings.Error", err)
		}
	})
}

// FuzzWebhookAnswer feeds arbitrary answer bodies to the webhook answer
// decoder. Nothing may panic, and an accepted answer must name a usable
// user that is not expired.
func FuzzWebhookAnswer(f *testing.F) {
	for _, seed := range []string{
		`{"uid":1001}`, `{"uid":"alice","channels":["a","b*"],"expires_at":1900000000}`,
		`{"uid":1e3}`, `{"uid":1.5}`, `{"uid":null}`, `{"uid":""}`, `{}`, `[]`, `null`,
		`{"uid":-0,"expires_at":1.5e9}`, `{"uid":"x","expires_at":"1"}`, `{"uid":99999999999999999999999}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		id, err := decodeWebhookAnswer(body, testNow)
		if err != nil {
			return
		}
		if !validUser(id.User) {
			t.Fatalf("accepted invalid user %q from %q", id.User, body)
		}
		if !id.Expires.IsZero() && !testNow.Before(id.Expires) {
			t.Fatalf("accepted expired answer %q (expires %v)", body, id.Expires)
		}
		for _, c := range id.Channels {
			if c == "" {
				t.Fatalf("empty channel from %q", body)
			}
		}
	})
}
