package auth

import (
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Once the fast path knows a header, every token the full parser refuses
// must still be refused, with the parser's reason: the fast path only ever
// accepts, and only what the parser would.
func TestHS256FastPathRefusesWhatTheParserRefuses(t *testing.T) {
	a := newAuth(t, Config{JWTSecret: testSecret})
	hs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, testSecret, "", c) }
	valid := hs(userClaims("u1"))
	if _, ok := a.verifier.fast.verify(valid); ok {
		t.Fatal("fast path accepted a token before the parser accepted its header")
	}
	mustAuth(t, a, valid)
	if id, ok := a.verifier.fast.verify(valid); !ok || id.User != "u1" || !id.Expires.Equal(testNow.Add(time.Hour)) {
		t.Fatalf("fast path after learning the header: %+v, %v", id, ok)
	}

	enc := base64.RawURLEncoding.EncodeToString
	parts := strings.Split(valid, ".")
	tampered := parts[0] + "." + enc([]byte(`{"sub":"admin","exp":`+strconv.FormatInt(testNow.Add(time.Hour).Unix(), 10)+`}`)) + "." + parts[2]
	for _, tc := range []struct{ name, token, want string }{
		{"expired", hs(jwt.MapClaims{"sub": "u1", "exp": testNow.Add(-time.Second).Unix()}), "token expired"},
		{"expires now", hs(jwt.MapClaims{"sub": "u1", "exp": testNow.Unix()}), "token expired"},
		{"not yet valid", hs(jwt.MapClaims{"sub": "u1", "nbf": testNow.Add(time.Second).Unix()}), "token not valid yet"},
		{"other secret", sign(t, jwt.SigningMethodHS256, []byte("another secret, also 32 bytes..."), "", userClaims("u1")), "invalid token signature"},
		{"tampered claims", tampered, "invalid token signature"},
		{"signature cut", valid[:len(valid)-2], "malformed token"},
		{"no subject", hs(jwt.MapClaims{"exp": testNow.Add(time.Hour).Unix()}), "token has no valid subject"},
		{"subject with a space", hs(jwt.MapClaims{"sub": "a b"}), "token has no valid subject"},
		{"exp not a number", hs(jwt.MapClaims{"sub": "u1", "exp": "soon"}), "malformed token"},
		{"extra segment", valid + ".x", "malformed token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if id, ok := a.verifier.fast.verify(tc.token); ok {
				t.Fatalf("fast path accepted %+v", id)
			}
			wantRefused(t, a, tc.token, tc.want)
		})
	}
}
