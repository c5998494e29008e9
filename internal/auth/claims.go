package auth

import (
	"encoding/json"
	"time"
)

// fastClaims is what scanClaims takes from a token's claims: what
// json.Unmarshal into claims would give for the fields the HS256 fast path
// reads.
type fastClaims struct {
	sub      string
	exp, nbf time.Time // zero when absent
	channels []string  // nil when absent; empty, not nil, for []
}

// The claims scanClaims knows, one bit each, to refuse a repeated one.
const (
	claimSub = 1 << iota
	claimExp
	claimNbf
	claimIat
	claimIss
	claimJti
	claimAud
	claimChannels
)

// maxDateDigits bounds a date claim's digits: every integer of up to 15
// digits is exact as a float64, which is how the JWT library reads it.
const maxDateDigits = 15

// scanClaims reads a token's claims (b: the decoded payload) without
// encoding/json's reflection and allocations; the storm profile showed
// json.Unmarshal at about a twentieth of the server's CPU per connect. It
// accepts only the common shape, and says ok only when the result is
// exactly what json.Unmarshal into claims gives: the payload is valid JSON
// (json.Valid, the same grammar) and an object; every key is ASCII without
// upper case or escapes (encoding/json matches keys case-insensitively, so
// "SUB" or "\u0073ub" would be the subject); no claim it knows comes twice
// (the last one would win); sub and channels are strings without escapes
// or non-ASCII bytes (copied as they are); exp, nbf and iat are plain
// non-negative integers (the library reads them as float64 seconds); iss
// and jti are strings, aud a string or an array of strings (the library
// refuses other types). Anything else, null included, answers ok false
// and the caller leaves the token to the full parser. FuzzScanClaims holds
// it to json.Unmarshal.
func scanClaims(b []byte) (c fastClaims, ok bool) {
	if !json.Valid(b) {
		return c, false
	}
	s := scanner{b: b}
	s.space()
	if !s.eat('{') {
		return c, false
	}
	var seen int
	s.space()
	if s.eat('}') {
		return c, s.end()
	}
	for {
		s.space()
		key, ok := s.plainString(true)
		if !ok {
			return c, false
		}
		s.space()
		s.eat(':') // valid JSON: a colon follows a key
		s.space()
		bit := 0
		switch string(key) {
		case "sub":
			bit = claimSub
			v, ok := s.plainString(false)
			if !ok {
				return c, false
			}
			c.sub = string(v)
		case "exp":
			bit = claimExp
			if c.exp, ok = s.date(); !ok {
				return c, false
			}
		case "nbf":
			bit = claimNbf
			if c.nbf, ok = s.date(); !ok {
				return c, false
			}
		case "iat":
			bit = claimIat
			if _, ok = s.date(); !ok {
				return c, false
			}
		case "iss", "jti":
			bit = claimIss
			if key[0] == 'j' {
				bit = claimJti
			}
			if !s.skipString() {
				return c, false
			}
		case "aud":
			bit = claimAud
			if s.peek() == '[' {
				if !s.stringArray(nil) {
					return c, false
				}
			} else if !s.skipString() {
				return c, false
			}
		case "channels":
			bit = claimChannels
			c.channels = []string{}
			if s.peek() != '[' || !s.stringArray(&c.channels) {
				return c, false
			}
		default:
			s.skipValue()
		}
		if seen&bit != 0 {
			return c, false
		}
		seen |= bit
		s.space()
		if s.eat('}') {
			return c, s.end()
		}
		s.eat(',') // valid JSON: members are separated by commas
	}
}

// scanner walks a payload json.Valid has accepted, so it checks only what
// decides the result, not the grammar.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scanner) eat(c byte) bool {
	if s.peek() == c {
		s.i++
		return true
	}
	return false
}

func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// end reports whether only white space follows.
func (s *scanner) end() bool {
	s.space()
	return s.i == len(s.b)
}

// plainString reads a string with neither escapes nor non-ASCII bytes and
// returns its bytes; for a key (key true) upper-case letters refuse it too.
func (s *scanner) plainString(key bool) ([]byte, bool) {
	if !s.eat('"') {
		return nil, false
	}
	start := s.i
	for ; s.i < len(s.b); s.i++ {
		switch c := s.b[s.i]; {
		case c == '"':
			v := s.b[start:s.i]
			s.i++
			return v, true
		case c == '\\' || c >= 0x80 || (key && 'A' <= c && c <= 'Z'):
			return nil, false
		}
	}
	return nil, false
}

// skipString steps over a string, whatever it holds.
func (s *scanner) skipString() bool {
	if !s.eat('"') {
		return false
	}
	for ; s.i < len(s.b); s.i++ {
		switch s.b[s.i] {
		case '\\':
			s.i++ // the escaped byte, or the u of \uXXXX
		case '"':
			s.i++
			return true
		}
	}
	return false
}

// stringArray reads an array of strings; with out set, of plain strings,
// appended to *out.
func (s *scanner) stringArray(out *[]string) bool {
	s.eat('[')
	s.space()
	if s.eat(']') {
		return true
	}
	for {
		s.space()
		if out != nil {
			v, ok := s.plainString(false)
			if !ok {
				return false
			}
			*out = append(*out, string(v))
		} else if !s.skipString() {
			return false
		}
		s.space()
		if s.eat(']') {
			return true
		}
		s.eat(',')
	}
}

// date reads a plain non-negative integer of at most maxDateDigits digits
// (no sign, fraction or exponent) as a time that many seconds after the
// epoch.
func (s *scanner) date() (time.Time, bool) {
	start := s.i
	var n int64
	for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
		n = n*10 + int64(s.b[s.i]-'0')
		s.i++
	}
	if digits := s.i - start; digits == 0 || digits > maxDateDigits {
		return time.Time{}, false
	}
	switch s.peek() {
	case '.', 'e', 'E':
		return time.Time{}, false
	}
	return time.Unix(n, 0), true
}

// skipValue steps over any value: nested arrays and objects are counted
// by depth, strings skipped whole.
func (s *scanner) skipValue() {
	depth := 0
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case '"':
			s.skipString()
			if depth == 0 {
				return
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return // the end of the enclosing object
			}
			depth--
			if depth == 0 {
				s.i++
				return
			}
		case ',':
			if depth == 0 {
				return
			}
		}
		s.i++
	}
}
