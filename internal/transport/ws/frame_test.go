package ws

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/tidings/tidings"
)

func TestDecodeFrame(t *testing.T) {
	cases := []struct {
		in, op, ref string
		code        tidings.Code
	}{
		{`{"op":"auth","token":"t"}`, OpAuth, "", 0},
		{`{"op":"subscribe","channel":"@user","ref":1}`, OpSubscribe, "1", 0},
		{`{"op":"ping","ref":"a"}`, OpPing, `"a"`, 0},
		{`ping`, OpBarePing, "", 0},
		{` ping `, OpBarePing, "", 0},
		{`{"type":"heartbeat"}`, OpHeartbeat, "", 0},
		{`not json`, "", "", tidings.CodeBadRequest},
		{`{"op":`, "", "", tidings.CodeBadRequest},
		{`{"op":"read","ids":"x","ref":5}`, "", "5", tidings.CodeBadRequest},
		{`{"op":"ping","ref":{"x":1}}`, "", "", tidings.CodeBadRequest},
		{`{"ref":2}`, "", "2", tidings.CodeBadRequest},
		{`[]`, "", "", tidings.CodeBadRequest},
	}
	for _, c := range cases {
		f, err := DecodeFrame([]byte(c.in))
		if c.code != 0 {
			var e *tidings.Error
			if !errors.As(err, &e) || e.Code != c.code {
				t.Errorf("%s: err %v, want code %d", c.in, err, c.code)
			}
		} else if err != nil || f.Op != c.op {
			t.Errorf("%s: op %q err %v, want %q", c.in, f.Op, err, c.op)
		}
		if string(f.Ref) != c.ref {
			t.Errorf("%s: ref %q, want %q", c.in, f.Ref, c.ref)
		}
	}
}

func TestSinceSeq(t *testing.T) {
	for in, want := range map[string]int64{`{"op":"subscribe","since":0}`: 0, `{"op":"subscribe","since":42}`: 42, `{"op":"subscribe","since":"7"}`: 7} {
		f, _ := DecodeFrame([]byte(in))
		n, ok, err := f.SinceSeq()
		if err != nil || !ok || n != want {
			t.Errorf("%s: %d %v %v", in, n, ok, err)
		}
	}
	for _, in := range []string{`{"op":"subscribe","since":-1}`, `{"op":"subscribe","since":1.5}`, `{"op":"subscribe","since":"x"}`} {
		f, _ := DecodeFrame([]byte(in))
		if _, _, err := f.SinceSeq(); err == nil {
			t.Errorf("%s: no error", in)
		}
	}
}

func TestReplies(t *testing.T) {
	if got := string(okReply(json.RawMessage(`"r1"`))); got != `{"result":true,"ref":"r1"}` {
		t.Fatal(got)
	}
	got := string(errReply(json.RawMessage(`3`), tidings.Errorf(tidings.CodeForbidden, "no")))
	if got != `{"code":3,"msg":"no","ref":3}` {
		t.Fatal(got)
	}
	if got := string(pongReply(nil)); got != `{"op":"pong"}` {
		t.Fatal(got)
	}
}

// FuzzDecodeFrame: any input gives a frame or a coded error, never a
// panic, and an error reply that is valid JSON.
func FuzzDecodeFrame(f *testing.F) {
	for _, s := range []string{`{"op":"auth","token":"x","ref":1}`, `ping`, `{"type":"heartbeat"}`,
		`{"op":"subscribe","channel":"@user","since":3}`, `{"op":"read","ids":["a"],"all":true}`, `{`, `"x"`, ``} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := DecodeFrame(b)
		if err != nil {
			var e *tidings.Error
			if !errors.As(err, &e) || e.Code == 0 {
				t.Fatalf("error without code: %v", err)
			}
			if !json.Valid(errReply(fr.Ref, err)) {
				t.Fatalf("error reply not JSON for %q", b)
			}
			return
		}
		if fr.Op == "" {
			t.Fatalf("no op and no error for %q", b)
		}
		_, _, _ = fr.SinceSeq()
		if !json.Valid(okReply(fr.Ref)) {
			t.Fatalf("ok reply not JSON for %q", b)
		}
	})
}
