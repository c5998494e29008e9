package inbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/tidings/tidings"
)

func code(err error) tidings.Code {
	var e *tidings.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

func TestDecodeSend(t *testing.T) {
	r, err := DecodeSend([]byte(`{"users":["1001","1002","1001"],"title":"hi","data":{"a":1},"ttl":"72h"}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Users) != 2 || r.Type != DefaultType || r.ttl.Hours() != 72 || string(r.Data) != `{"a":1}` {
		t.Fatalf("%+v", r)
	}
	// Data is kept compact (events carry it as is); text inside strings stays.
	r, err = DecodeSend([]byte("{\"users\":[\"1\"],\"data\": {\n  \"a\" : [1, 2],\t\"s\": \"x  y\"\r\n}}"))
	if err != nil || string(r.Data) != `{"a":[1,2],"s":"x  y"}` {
		t.Fatalf("data %s %v", r.Data, err)
	}
	bad := map[string]string{
		``:                              "empty body",
		`[1]`:                           "JSON object",
		`{"users":[]}`:                  "users",
		`{"users":"1001"}`:              "users: must be an array",
		`{"users":["1"],"title":5}`:     "title: must be a string",
		`{"users":["1"],"ttl":"soon"}`:  "ttl",
		`{"users":["1"]} {}`:            "after the object",
		`{"users":["a b"]}`:             "not a valid user id",
		`{"users":["1"],"data":{"a":}}`: "malformed JSON",
		`{"users":["1"],"ttl":"-5s"}`:   "ttl",
	}
	for in, want := range bad {
		_, err := DecodeSend([]byte(in))
		if code(err) != tidings.CodeBadRequest || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want a bad request naming %q", in, err, want)
		}
	}
}

func TestDecodePublishAndMesh(t *testing.T) {
	p, err := DecodePublish([]byte(`{"channel":"post:42","channels":["a"],"event":"comment.created","data":{"x":1}}`))
	if err != nil || len(p.Channels) != 2 || p.Event != "comment.created" {
		t.Fatalf("%+v %v", p, err)
	}
	p, err = DecodePublish([]byte("{\"channel\":\"a\",\"data\": [ 1,\n 2 ]}"))
	if err != nil || string(p.Data) != `[1,2]` {
		t.Fatalf("data %s %v", p.Data, err)
	}
	if _, err := DecodePublish([]byte(`{"event":"x"}`)); code(err) != tidings.CodeBadRequest {
		t.Fatal("no channel accepted")
	}
	if _, err := DecodePublish([]byte(`{"channel":"a b"}`)); code(err) != tidings.CodeBadRequest {
		t.Fatal("bad channel accepted")
	}
	m, err := DecodeMesh([]byte(`{"c":"user:1001","d":"{\"event\":\"@user\"}"}`))
	if err != nil || m.D != `{"event":"@user"}` {
		t.Fatalf("%+v %v", m, err)
	}
	if _, err := DecodeMesh([]byte(`{"d":"x"}`)); code(err) != tidings.CodeBadRequest {
		t.Fatal("mesh without channel accepted")
	}
}

// FuzzDecodeBodies: publish bodies never panic; a decoded body is valid
// and an error always carries a code.
func FuzzDecodeBodies(f *testing.F) {
	for _, s := range []string{`{"users":["1"],"title":"t","data":{"a":[1,2]},"ttl":"1h","idempotency_key":"k"}`,
		`{"channel":"post:1","event":"e","data":null}`, `{"c":"user:1","d":"x"}`, `{"users":[1]}`, `{`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := DecodeSend(b); err != nil {
			if code(err) == 0 {
				t.Fatalf("send: uncoded error %v", err)
			}
		} else {
			if len(r.Users) == 0 || r.Type == "" {
				t.Fatalf("send: accepted %+v", r)
			}
			if r.Data != nil && (!json.Valid(r.Data) || !isCompact(r.Data)) {
				t.Fatalf("send: data %q accepted as is", r.Data)
			}
		}
		if p, err := DecodePublish(b); err != nil {
			if code(err) == 0 {
				t.Fatalf("publish: uncoded error %v", err)
			}
		} else if len(p.Channels) == 0 || !json.Valid(p.Data) || !isCompact(p.Data) {
			t.Fatalf("publish: accepted %+v", p)
		}
		if _, err := DecodeMesh(b); err != nil && code(err) == 0 {
			t.Fatalf("mesh: uncoded error %v", err)
		}
	})
}

func isCompact(raw []byte) bool {
	var b bytes.Buffer
	return json.Compact(&b, raw) == nil && bytes.Equal(b.Bytes(), raw)
}
