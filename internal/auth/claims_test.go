package auth

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// noExp marks a claimsShapes case without an exp.
const noExp = -1

// claimsShapes are payloads of the shapes scanClaims must read itself,
// with what it must read, and of shapes it must leave to the parser (ok
// false). They also seed FuzzScanClaims.
var claimsShapes = []struct {
	payload  string
	ok       bool
	sub      string
	exp      int64 // seconds, or noExp
	channels []string
}{
	{`{"sub":"user-12345","exp":1900000000}`, true, "user-12345", 1900000000, nil},
	{`{"sub":"u1","exp":1900000000,"iat":1700000000,"nbf":1700000000,"iss":"app","jti":"a\"b","aud":["x","y\u00e9"]}`, true, "u1", 1900000000, nil},
	{`{"sub":"u1","channels":["post:1","group:*"],"aud":"api","role":{"admin":[true,null,1.5e3,"}"]},"n":-1}`, true, "u1", noExp, []string{"post:1", "group:*"}},
	{` { "sub" : "u1" , "channels" : [ ] } `, true, "u1", noExp, []string{}},
	{`{}`, true, "", noExp, nil},
	{`{"sub":"u1","exp":0}`, true, "u1", 0, nil},
	// Left to the parser:
	{`{"SUB":"u1"}`, false, "", noExp, nil},
	{`{"s\u0075b":"u1"}`, false, "", noExp, nil},
	{`{"ſub":"u1"}`, false, "", noExp, nil},
	{`{"sub":"u1","sub":"u2"}`, false, "", noExp, nil},
	{`{"sub":"jos\u00e9"}`, false, "", noExp, nil},
	{`{"sub":"josé"}`, false, "", noExp, nil},
	{`{"sub":null}`, false, "", noExp, nil},
	{`{"sub":1}`, false, "", noExp, nil},
	{`{"sub":"u1","exp":1.9e9}`, false, "", noExp, nil},
	{`{"sub":"u1","exp":1900000000.5}`, false, "", noExp, nil},
	{`{"sub":"u1","exp":-1}`, false, "", noExp, nil},
	{`{"sub":"u1","exp":"1900000000"}`, false, "", noExp, nil},
	{`{"sub":"u1","exp":1234567890123456}`, false, "", noExp, nil},
	{`{"sub":"u1","exp":null}`, false, "", noExp, nil},
	{`{"sub":"u1","aud":1}`, false, "", noExp, nil},
	{`{"sub":"u1","aud":[1]}`, false, "", noExp, nil},
	{`{"sub":"u1","iss":2}`, false, "", noExp, nil},
	{`{"sub":"u1","channels":"a"}`, false, "", noExp, nil},
	{`{"sub":"u1","channels":[1]}`, false, "", noExp, nil},
	{`{"sub":"u1","channels":null}`, false, "", noExp, nil},
	{`{"sub":"u1","channels":["\n"]}`, false, "", noExp, nil},
	{`{"sub":"u1"} x`, false, "", noExp, nil},
	{`{"sub":"u1",}`, false, "", noExp, nil},
	{`[]`, false, "", noExp, nil},
	{`null`, false, "", noExp, nil},
	{`"sub"`, false, "", noExp, nil},
	{``, false, "", noExp, nil},
}

// FuzzScanClaims holds scanClaims to json.Unmarshal into claims: whenever
// it reads a payload itself, encoding/json must accept the payload too and
// give the same subject, dates and channels.
func FuzzScanClaims(f *testing.F) {
	for _, tc := range claimsShapes {
		f.Add([]byte(tc.payload))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := scanClaims(b)
		if !ok {
			return
		}
		var want claims
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("scanClaims read %q, json.Unmarshal refuses it: %v", b, err)
		}
		if got.sub != want.Subject {
			t.Fatalf("%q: sub %q, json.Unmarshal %q", b, got.sub, want.Subject)
		}
		sameDate(t, b, "exp", got.exp, want.ExpiresAt)
		sameDate(t, b, "nbf", got.nbf, want.NotBefore)
		if !reflect.DeepEqual(got.channels, want.Channels) {
			t.Fatalf("%q: channels %#v, json.Unmarshal %#v", b, got.channels, want.Channels)
		}
	})
}

func sameDate(t *testing.T, b []byte, name string, got time.Time, want *jwt.NumericDate) {
	t.Helper()
	var w time.Time
	if want != nil {
		w = want.Time
	}
	if !got.Equal(w) {
		t.Fatalf("%q: %s %v, json.Unmarshal %v", b, name, got, w)
	}
}

// The common shapes are read by scanClaims itself (otherwise the fast path
// would gain nothing); the odd ones are left to the parser.
func TestScanClaimsShapes(t *testing.T) {
	for _, tc := range claimsShapes {
		c, ok := scanClaims([]byte(tc.payload))
		if ok != tc.ok {
			t.Errorf("%s: ok %v, want %v", tc.payload, ok, tc.ok)
			continue
		}
		if !ok {
			continue
		}
		var exp time.Time
		if tc.exp != noExp {
			exp = time.Unix(tc.exp, 0)
		}
		if c.sub != tc.sub || !c.exp.Equal(exp) || !reflect.DeepEqual(c.channels, tc.channels) {
			t.Errorf("%s: got %+v", tc.payload, c)
		}
	}
}
