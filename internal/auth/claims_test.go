package auth

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// claimsSeeds are payloads of every shape scanClaims must read itself,
// and of shapes it must leave to the parser.
var claimsSeeds = []string{
	`{"sub":"user-12345","exp":1900000000}`,
	`{"sub":"u1","exp":1900000000,"iat":1700000000,"nbf":1700000000,"iss":"app","jti":"a\"b","aud":["x","y\u00e9"]}`,
	`{"sub":"u1","channels":["post:1","group:*"],"aud":"api","role":{"admin":[true,null,1.5e3,"}"]},"n":-1}`,
	` { "sub" : "u1" , "channels" : [ ] } `,
	`{}`,
	`{"sub":"u1","exp":0}`,
	// Left to the parser:
	`{"SUB":"u1"}`, `{"s\u0075b":"u1"}`, `{"ſub":"u1"}`, `{"sub":"u1","sub":"u2"}`,
	`{"sub":"jos\u00e9"}`, `{"sub":"josé"}`, `{"sub":null}`, `{"sub":1}`,
	`{"sub":"u1","exp":1.9e9}`, `{"sub":"u1","exp":1900000000.5}`, `{"sub":"u1","exp":-1}`,
	`{"sub":"u1","exp":"1900000000"}`, `{"sub":"u1","exp":1234567890123456}`, `{"sub":"u1","exp":null}`,
	`{"sub":"u1","aud":1}`, `{"sub":"u1","aud":[1]}`, `{"sub":"u1","iss":2}`, `{"sub":"u1","channels":"a"}`,
	`{"sub":"u1","channels":[1]}`, `{"sub":"u1","channels":null}`, `{"sub":"u1","channels":["\n"]}`,
	`{"sub":"u1"} x`, `{"sub":"u1",}`, `[]`, `null`, `"sub"`, ``,
}

// FuzzScanClaims holds scanClaims to json.Unmarshal into claims: whenever
// it reads a payload itself, encoding/json must accept the payload too and
// give the same subject, dates and channels.
func FuzzScanClaims(f *testing.F) {
	for _, s := range claimsSeeds {
		f.Add([]byte(s))
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
	for _, tc := range []struct {
		payload  string
		ok       bool
		sub      string
		exp      int64 // 0: none
		channels []string
	}{
		{`{"sub":"user-12345","exp":1900000000}`, true, "user-12345", 1900000000, nil},
		{`{"sub":"u1","exp":1900000000,"iat":1700000000,"nbf":1700000000,"iss":"app","jti":"a\"b","aud":["x","y\u00e9"]}`, true, "u1", 1900000000, nil},
		{`{"sub":"u1","channels":["post:1","group:*"],"aud":"api","role":{"admin":[true,null,1.5e3,"}"]},"n":-1}`, true, "u1", 0, []string{"post:1", "group:*"}},
		{` { "sub" : "u1" , "channels" : [ ] } `, true, "u1", 0, []string{}},
		{`{}`, true, "", 0, nil},
		{`{"SUB":"u1"}`, false, "", 0, nil},
		{`{"s\u0075b":"u1"}`, false, "", 0, nil},
		{`{"ſub":"u1"}`, false, "", 0, nil},
		{`{"sub":"u1","sub":"u2"}`, false, "", 0, nil},
		{`{"sub":"jos\u00e9"}`, false, "", 0, nil},
		{`{"sub":"u1","exp":1.9e9}`, false, "", 0, nil},
		{`{"sub":"u1","exp":"1900000000"}`, false, "", 0, nil},
		{`{"sub":"u1","exp":null}`, false, "", 0, nil},
		{`{"sub":"u1","aud":[1]}`, false, "", 0, nil},
		{`{"sub":"u1","channels":null}`, false, "", 0, nil},
		{`{"sub":"u1"} x`, false, "", 0, nil},
		{`null`, false, "", 0, nil},
	} {
		c, ok := scanClaims([]byte(tc.payload))
		if ok != tc.ok {
			t.Errorf("%s: ok %v, want %v", tc.payload, ok, tc.ok)
			continue
		}
		if !ok {
			continue
		}
		var exp time.Time
		if tc.exp != 0 {
			exp = time.Unix(tc.exp, 0)
		}
		if c.sub != tc.sub || !c.exp.Equal(exp) || !reflect.DeepEqual(c.channels, tc.channels) {
			t.Errorf("%s: got %+v", tc.payload, c)
		}
	}
}
