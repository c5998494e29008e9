package auth

import (
	"crypto/elliptic"
	"encoding/base64"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestHS256(t *testing.T) {
	a := newAuth(t, Config{JWTSecret: testSecret})
	claims := userClaims("1001")
	claims["channels"] = []string{"post:42", "group:*"}
	id := mustAuth(t, a, sign(t, jwt.SigningMethodHS256, testSecret, "", claims))
	if id.User != "1001" || !slices.Equal(id.Channels, []string{"post:42", "group:*"}) || !id.Expires.Equal(testNow.Add(time.Hour)) {
		t.Fatalf("identity %+v", id)
	}
}

func TestNoExpiryMeansZeroExpires(t *testing.T) {
	a := newAuth(t, Config{JWTSecret: testSecret})
	id := mustAuth(t, a, sign(t, jwt.SigningMethodHS256, testSecret, "", jwt.MapClaims{"sub": "u1"}))
	if !id.Expires.IsZero() || id.Channels != nil {
		t.Fatalf("identity %+v", id)
	}
}

func TestMintHS256(t *testing.T) {
	tok, err := MintHS256(testSecret, "alice", time.Hour, []string{"post:1"})
	if err != nil {
		t.Fatal(err)
	}
	a := newAuth(t, Config{JWTSecret: testSecret})
	a.verifier.now = time.Now
	id := mustAuth(t, a, tok)
	if id.User != "alice" || !slices.Equal(id.Channels, []string{"post:1"}) {
		t.Fatalf("identity %+v", id)
	}
	if d := time.Until(id.Expires); d < 58*time.Minute || d > time.Hour {
		t.Fatalf("expires in %v, want about an hour", d)
	}
	for name, f := range map[string]func() (string, error){
		"no secret":   func() (string, error) { return MintHS256(nil, "a", time.Hour, nil) },
		"no user":     func() (string, error) { return MintHS256(testSecret, "", time.Hour, nil) },
		"user space":  func() (string, error) { return MintHS256(testSecret, "a b", time.Hour, nil) },
		"zero ttl":    func() (string, error) { return MintHS256(testSecret, "a", 0, nil) },
		"negative tt": func() (string, error) { return MintHS256(testSecret, "a", -time.Second, nil) },
	} {
		if _, err := f(); err == nil {
			t.Errorf("%s: want an error", name)
		}
	}
}

func TestAsymmetric(t *testing.T) {
	for _, tc := range []struct {
		name   string
		method jwt.SigningMethod
		kp     keyPair
	}{
		{"RS256", jwt.SigningMethodRS256, rsaPair(t)},
		{"ES256", jwt.SigningMethodES256, ecPair(t, elliptic.P256())},
		{"EdDSA", jwt.SigningMethodEdDSA, edPair(t)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAuth(t, Config{JWTPublicKeyPEM: pemOf(t, tc.kp.pub)})
			if id := mustAuth(t, a, sign(t, tc.method, tc.kp.priv, "", userClaims("u-"+tc.name))); id.User != "u-"+tc.name {
				t.Fatalf("user %q", id.User)
			}
			// An HS256 token is refused: only the configured key's algorithm is valid.
			wantRefused(t, a, sign(t, jwt.SigningMethodHS256, testSecret, "", userClaims("u")), "token algorithm not allowed")
		})
	}
}

func TestExpiryIsExact(t *testing.T) {
	a := newAuth(t, Config{JWTSecret: testSecret})
	at := func(exp time.Time) string {
		return sign(t, jwt.SigningMethodHS256, testSecret, "", jwt.MapClaims{"sub": "u1", "exp": exp.Unix()})
	}
	wantRefused(t, a, at(testNow.Add(-time.Second)), "token expired")
	wantRefused(t, a, at(testNow), "token expired") // valid only while now < exp
	mustAuth(t, a, at(testNow.Add(time.Second)))
}

func TestNotBefore(t *testing.T) {
	a := newAuth(t, Config{JWTSecret: testSecret})
	at := func(nbf time.Time) string {
		return sign(t, jwt.SigningMethodHS256, testSecret, "", jwt.MapClaims{"sub": "u1", "nbf": nbf.Unix()})
	}
	wantRefused(t, a, at(testNow.Add(time.Second)), "token not valid yet")
	mustAuth(t, a, at(testNow))
}

func TestWrongKey(t *testing.T) {
	hs := newAuth(t, Config{JWTSecret: testSecret})
	wantRefused(t, hs, sign(t, jwt.SigningMethodHS256, []byte("another secret, also 32 bytes..."), "", userClaims("u1")), "invalid token signature")

	rs := newAuth(t, Config{JWTPublicKeyPEM: pemOf(t, rsaPair(t).pub)})
	wantRefused(t, rs, sign(t, jwt.SigningMethodRS256, otherRSAPair(t).priv, "", userClaims("u1")), "invalid token signature")

	ed := newAuth(t, Config{JWTPublicKeyPEM: pemOf(t, edPair(t).pub)})
	wantRefused(t, ed, sign(t, jwt.SigningMethodEdDSA, edPair(t).priv, "", userClaims("u1")), "invalid token signature")
}

// noneToken builds an unsigned token by hand: the library refuses to make
// one without its "unsafe" key, which is the point.
func noneToken(header, payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(header)) + "." + enc([]byte(payload)) + "."
}

func TestAlgNone(t *testing.T) {
	payload := `{"sub":"u1","exp":` + strconv.FormatInt(testNow.Add(time.Hour).Unix(), 10) + `}`
	for _, cfg := range map[string]Config{
		"secret": {JWTSecret: testSecret},
		"rsa":    {JWTPublicKeyPEM: pemOf(t, rsaPair(t).pub)},
		"both":   {JWTSecret: testSecret, JWTPublicKeyPEM: pemOf(t, rsaPair(t).pub)},
	} {
		a := newAuth(t, cfg)
		for _, alg := range []string{"none", "None", "NONE"} {
			tok := noneToken(`{"alg":"`+alg+`","typ":"JWT"}`, payload)
			wantRefused(t, a, tok, "token algorithm not allowed")
			// With a signature part that is not empty either.
			wantRefused(t, a, tok+"c2ln", "token algorithm not allowed")
		}
	}
}

func TestAlgConfusion(t *testing.T) {
	kp := rsaPair(t)
	pubPEM := pemOf(t, kp.pub)
	// The classic attack: the public key, which is public, used as an HMAC
	// secret.
	forged := sign(t, jwt.SigningMethodHS256, pubPEM, "", userClaims("mallory"))

	a := newAuth(t, Config{JWTPublicKeyPEM: pubPEM})
	wantRefused(t, a, forged, "token algorithm not allowed")

	// With an HS256 secret configured too, HS256 is allowed but verified
	// with the secret only, never with the RSA key.
	both := newAuth(t, Config{JWTSecret: testSecret, JWTPublicKeyPEM: pubPEM})
	wantRefused(t, both, forged, "invalid token signature")
	mustAuth(t, both, sign(t, jwt.SigningMethodRS256, kp.priv, "", userClaims("u1")))
	mustAuth(t, both, sign(t, jwt.SigningMethodHS256, testSecret, "", userClaims("u1")))

	// An ES256 token cannot pass with the RSA key either.
	wantRefused(t, a, sign(t, jwt.SigningMethodES256, ecPair(t, elliptic.P256()).priv, "", userClaims("u1")), "token algorithm not allowed")
	// Nor an algorithm of the same family that is not configured.
	wantRefused(t, a, sign(t, jwt.SigningMethodRS512, kp.priv, "", userClaims("u1")), "token algorithm not allowed")
	wantRefused(t, a, sign(t, jwt.SigningMethodPS256, kp.priv, "", userClaims("u1")), "token algorithm not allowed")
}

func TestSubject(t *testing.T) {
	a := newAuth(t, Config{JWTSecret: testSecret})
	for name, claims := range map[string]jwt.MapClaims{
		"missing": {"exp": testNow.Add(time.Hour).Unix()},
		"empty":   {"sub": "", "exp": testNow.Add(time.Hour).Unix()},
		"space":   {"sub": "a b", "exp": testNow.Add(time.Hour).Unix()},
	} {
		t.Run(name, func(t *testing.T) {
			wantRefused(t, a, sign(t, jwt.SigningMethodHS256, testSecret, "", claims), "token has no valid subject")
		})
	}
	// A sub that is not a string does not decode.
	wantRefused(t, a, sign(t, jwt.SigningMethodHS256, testSecret, "", jwt.MapClaims{"sub": 1001}), "malformed token")
}

func TestMalformed(t *testing.T) {
	a := newAuth(t, Config{JWTSecret: testSecret})
	for _, tok := range []string{"x", "a.b", "a.b.c", "a.b.c.d", "..", "eyJhbGciOiJIUzI1NiJ9.!!.x"} {
		wantRefused(t, a, tok, "")
	}
	// A channels claim of the wrong type is refused, not ignored.
	wantRefused(t, a, sign(t, jwt.SigningMethodHS256, testSecret, "", jwt.MapClaims{"sub": "u1", "channels": "post:1"}), "malformed token")
}
