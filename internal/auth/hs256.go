package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"strings"
	"sync"
	"time"

	"github.com/tidings/tidings"
)

// hs256Fast accepts the common token (an HS256 JWT whose header the full
// parser has already accepted once) without the parser's generic
// machinery: no header map, no token object, a pooled HMAC. It only ever
// says yes: any token it cannot accept (unknown header, bad signature,
// claims it cannot decode, expired, not yet valid, no subject) goes to the
// full parser, which decides and explains. Every check it makes is the
// parser's, with the same encoding and the same clock, so it never accepts
// a token the parser refuses; the claims are read by scanClaims, which
// gives way to the parser on any shape it is not sure of.
//
// The profile of a reconnect storm showed the parser at a tenth of the
// server's CPU per connect (a header map, a token object, a new HMAC per
// call); see BenchmarkAuthenticateHS256.
type hs256Fast struct {
	secret []byte
	now    func() time.Time
	pool   sync.Pool // *hs256Scratch

	mu      sync.RWMutex
	headers map[string]struct{} // header segments of HS256 tokens the parser accepted
}

// maxFastHeaders bounds the header cache: an issuer uses a handful of
// header shapes; tokens with other headers simply take the full path.
const maxFastHeaders = 32

func newHS256Fast(secret []byte, now func() time.Time) *hs256Fast {
	f := &hs256Fast{secret: secret, now: now, headers: map[string]struct{}{}}
	f.pool.New = func() any { return &hs256Scratch{mac: hmac.New(sha256.New, f.secret)} }
	return f
}

// hs256Scratch is one verification's reusable state.
type hs256Scratch struct {
	mac hash.Hash // HMAC-SHA256 keyed with the secret
	buf []byte
}

// learn records the header segment of a token the full parser accepted as
// HS256, so later tokens with the same header bytes take the fast path.
func (f *hs256Fast) learn(token string) {
	header, _, ok := strings.Cut(token, ".")
	if !ok {
		return
	}
	f.mu.Lock()
	if len(f.headers) < maxFastHeaders {
		f.headers[header] = struct{}{}
	}
	f.mu.Unlock()
}

// verify returns the token's identity, or ok false when the full parser
// must decide.
func (f *hs256Fast) verify(token string) (id tidings.Identity, ok bool) {
	header, rest, found := strings.Cut(token, ".")
	if !found {
		return id, false
	}
	payload, sig, found := strings.Cut(rest, ".")
	if !found || strings.Contains(sig, ".") {
		return id, false
	}
	f.mu.RLock()
	_, known := f.headers[header]
	f.mu.RUnlock()
	if !known {
		return id, false
	}
	if base64.RawURLEncoding.DecodedLen(len(sig)) != sha256.Size {
		return id, false
	}
	s := f.pool.Get().(*hs256Scratch)
	defer f.pool.Put(s)
	signed := len(header) + 1 + len(payload)
	s.buf = append(s.buf[:0], token...)
	var got, want [sha256.Size]byte
	if n, err := base64.RawURLEncoding.Decode(got[:], s.buf[signed+1:]); err != nil || n != len(got) {
		return id, false
	}
	s.mac.Reset()
	s.mac.Write(s.buf[:signed])
	s.mac.Sum(want[:0])
	if !hmac.Equal(got[:], want[:]) {
		return id, false
	}
	// The decoded claims go after the token's bytes in the same buffer.
	s.buf = append(s.buf, make([]byte, base64.RawURLEncoding.DecodedLen(len(payload)))...)
	raw := s.buf[len(token):]
	n, err := base64.RawURLEncoding.Decode(raw, s.buf[len(header)+1:signed])
	if err != nil {
		return id, false
	}
	c, ok := scanClaims(raw[:n])
	if !ok {
		return id, false
	}
	// The parser's checks, without leeway: valid while now < exp and from
	// nbf on.
	now := f.now()
	if !c.exp.IsZero() && !now.Before(c.exp) {
		return id, false
	}
	if !c.nbf.IsZero() && now.Before(c.nbf) {
		return id, false
	}
	if !validUser(c.sub) {
		return id, false
	}
	id = tidings.Identity{User: c.sub, Channels: c.channels, Expires: c.exp}
	return id, true
}
