package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/tidings/tidings"
)

// The algorithms Tidings accepts, one per key type. A key type never serves
// two algorithms, which is what rules out algorithm confusion: an RSA
// public key is only ever handed to RS256, never used as an HMAC secret.
const (
	algHS256 = "HS256"
	algRS256 = "RS256"
	algES256 = "ES256"
	algEdDSA = "EdDSA"
)

// minRSABits is the smallest RSA key accepted (NIST SP 800-131A).
const minRSABits = 2048

// claims are the JWT claims Tidings reads. Unknown claims are ignored.
type claims struct {
	jwt.RegisteredClaims
	// Channels lists the topic channels (or "prefix*" patterns) the token
	// lets its user subscribe to in namespaces with the claim policy.
	Channels []string `json:"channels,omitempty"`
}

// errNoKey is returned by the key function when no configured key fits the
// token (an unknown kid, or a JWKS that could not be fetched).
var errNoKey = errors.New("no key for this token")

// jwtVerifier checks JWTs against the configured keys.
type jwtVerifier struct {
	secret []byte
	static any       // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey; nil when none
	jwks   *jwksKeys // nil when none
	algs   []string  // the algorithms some configured key serves
	parser *jwt.Parser
	now    func() time.Time // the clock exp and nbf are checked against
	fast   *hs256Fast       // nil without an HS256 secret
}

func newJWTVerifier(secret []byte, static any, jwks *jwksKeys) *jwtVerifier {
	v := &jwtVerifier{secret: secret, static: static, jwks: jwks, now: time.Now}
	if len(secret) > 0 {
		v.algs = append(v.algs, algHS256)
		v.fast = newHS256Fast(secret, func() time.Time { return v.now() })
	}
	for _, alg := range []string{algRS256, algES256, algEdDSA} {
		if jwks != nil || (static != nil && keyFits(alg, static)) {
			v.algs = append(v.algs, alg)
		}
	}
	// No leeway: exp and nbf are exact, as the product promises. The
	// parser refuses every algorithm outside algs before any key is looked
	// up ("none" is never in it).
	v.parser = jwt.NewParser(
		jwt.WithValidMethods(v.algs),
		jwt.WithTimeFunc(func() time.Time { return v.now() }),
	)
	return v
}

// verify checks token as a JWT. final is true when the token is signed by a
// configured key but its claims refuse it: no other method may then accept
// it.
func (v *jwtVerifier) verify(ctx context.Context, token string) (id tidings.Identity, _ *tidings.Error, final bool) {
	if v.fast != nil {
		if id, ok := v.fast.verify(token); ok {
			return id, nil, false
		}
	}
	var c claims
	tok, err := v.parser.ParseWithClaims(token, &c, v.keyfunc(ctx))
	if err != nil {
		return tidings.Identity{}, v.classify(tok, err), errors.Is(err, jwt.ErrTokenInvalidClaims)
	}
	if !validUser(c.Subject) {
		return tidings.Identity{}, refuse("token has no valid subject", fmt.Errorf("sub %q", c.Subject)), true
	}
	if v.fast != nil && tok.Method.Alg() == algHS256 {
		v.fast.learn(token)
	}
	id = tidings.Identity{User: c.Subject, Channels: c.Channels}
	if c.ExpiresAt != nil {
		id.Expires = c.ExpiresAt.Time
	}
	return id, nil, false
}

// classify turns a parser error into the refusal a client sees.
func (v *jwtVerifier) classify(tok *jwt.Token, err error) *tidings.Error {
	if tok != nil && tok.Header != nil {
		if alg, _ := tok.Header["alg"].(string); !slices.Contains(v.algs, alg) {
			return refuse("token algorithm not allowed", fmt.Errorf("alg %q, allowed %v: %w", alg, v.algs, err))
		}
	}
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return refuse("malformed token", err)
	case errors.Is(err, errNoKey):
		return refuse("unknown token signing key", err)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return refuse("invalid token signature", err)
	case errors.Is(err, jwt.ErrTokenExpired):
		return refuse("token expired", err)
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return refuse("token not valid yet", err)
	default:
		return refuse("invalid token", err)
	}
}

// keyfunc picks the keys a token may be verified with. Each key is checked
// against the token's algorithm here too, so that even a JWKS publishing an
// odd key (an "oct" secret, a P-384 key) can never verify a token of
// another algorithm.
func (v *jwtVerifier) keyfunc(ctx context.Context) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		alg := t.Method.Alg()
		if alg == algHS256 {
			if len(v.secret) == 0 {
				return nil, errNoKey
			}
			return v.secret, nil
		}
		var keys []jwt.VerificationKey
		if v.static != nil && keyFits(alg, v.static) {
			keys = append(keys, v.static)
		}
		var jwksErr error
		if v.jwks != nil {
			found, err := v.jwks.keys(ctx, t)
			jwksErr = err
			for _, k := range found {
				if keyFits(alg, k) {
					keys = append(keys, k)
				}
			}
		}
		switch len(keys) {
		case 0:
			return nil, errors.Join(errNoKey, jwksErr)
		case 1:
			return keys[0], nil
		default:
			return jwt.VerificationKeySet{Keys: keys}, nil
		}
	}
}

// keyFits reports whether key is a public key of the type and strength alg
// needs.
func keyFits(alg string, key any) bool {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return alg == algRS256 && k.N != nil && k.N.BitLen() >= minRSABits
	case *ecdsa.PublicKey:
		return alg == algES256 && k.Curve == elliptic.P256()
	case ed25519.PublicKey:
		return alg == algEdDSA && len(k) == ed25519.PublicKeySize
	}
	return false
}

// parsePublicKeyPEM reads the first PEM block of data: a PKIX "PUBLIC KEY",
// a PKCS #1 "RSA PUBLIC KEY" or a "CERTIFICATE". Private keys are refused
// rather than reduced to their public half: the server only verifies, and
// a private key in its configuration is a mistake worth reporting.
func parsePublicKeyPEM(data []byte) (any, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	var key any
	var err error
	switch {
	case block.Type == "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case block.Type == "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case block.Type == "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			key = cert.PublicKey
		}
	case strings.Contains(block.Type, "PRIVATE KEY"):
		return nil, fmt.Errorf("PEM block %q is a private key; configure the public key", block.Type)
	default:
		return nil, fmt.Errorf("unsupported PEM block %q", block.Type)
	}
	if err != nil {
		return nil, err
	}
	for _, alg := range []string{algRS256, algES256, algEdDSA} {
		if keyFits(alg, key) {
			return key, nil
		}
	}
	return nil, fmt.Errorf("unsupported key %T: need RSA (>= %d bits), ECDSA P-256 or Ed25519", key, minRSABits)
}

// MintHS256 makes an HS256 token for user with sub, iat, exp (ttl>0) and optional channels claim.
// It is what the token command and development mode use; the app backend
// usually mints its own tokens with the same secret.
func MintHS256(secret []byte, user string, ttl time.Duration, channels []string) (string, error) {
	switch {
	case len(secret) == 0:
		return "", errors.New("auth: empty JWT secret")
	case !validUser(user):
		return "", fmt.Errorf("auth: invalid user id %q", user)
	case ttl <= 0:
		return "", fmt.Errorf("auth: token lifetime must be positive, got %v", ttl)
	}
	now := time.Now()
	c := claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   user,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
		Channels: slices.Clone(channels),
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
}
