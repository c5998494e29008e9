package tidings

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// plainNotification has Notification's fields and tags but not its
// MarshalJSON: encoding/json's own encoding, the reference.
type plainNotification Notification

func wantNotification(t testing.TB, n *Notification) []byte {
	t.Helper()
	b, err := json.Marshal((*plainNotification)(n))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wantEnvelope(t testing.TB, m *Message) []byte {
	t.Helper()
	if m.Raw {
		return m.Data
	}
	b, err := json.Marshal(ServerEvent{Event: m.Event, Channel: m.Channel, ID: m.ID, Data: m.Data})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var encodeStrings = []string{
	"", "plain", `quote " and \ backslash`, "<b>&amp;</b>", "tab\tnew\nline\rcr",
	"\x00\x1f\x7f", "héllo wörld", "日本語", "emoji 🎉", "\u2028\u2029", "bad utf-8 \xff\xfe",
}

func TestNotificationAppendJSON(t *testing.T) {
	at := time.Date(2026, 11, 23, 12, 34, 56, 789000000, time.UTC)
	read := at.Add(time.Minute)
	zone := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 5*3600+1800))
	for i, s := range encodeStrings {
		for _, data := range []json.RawMessage{nil, json.RawMessage(`{"a":[1,2.5,"x"],"b":null}`), json.RawMessage(`"s"`)} {
			n := &Notification{ID: "01JDB0Q3W8M4T5Z6Y7X8V9N0PQ", Seq: int64(i * 1000003), User: s, Type: s,
				Title: s, Body: s, URL: s, Data: data, Group: s, CreatedAt: at}
			if i%2 == 1 {
				n.ReadAt, n.ExpiresAt, n.CreatedAt = &read, &zone, zone
			}
			want := wantNotification(t, n)
			if got := n.AppendJSON(nil); !bytes.Equal(got, want) {
				t.Errorf("AppendJSON\n got %s\nwant %s", got, want)
			}
			// The API's answers go through MarshalJSON: the same bytes.
			if got, err := json.Marshal(n); err != nil || !bytes.Equal(got, want) {
				t.Errorf("json.Marshal\n got %s (%v)\nwant %s", got, err, want)
			}
		}
	}
}

func TestMessageAppendEnvelope(t *testing.T) {
	for _, s := range encodeStrings {
		for _, m := range []*Message{
			{Channel: s, Event: s, ID: s, Data: json.RawMessage(`{"x":1}`)},
			{Channel: "user:" + s, Event: "notification", ID: "42", Seq: 42, Data: json.RawMessage(`[true,false]`)},
			{Channel: s, Event: s, Data: nil},
			{Channel: s, Data: json.RawMessage("raw text, <b>as is</b>\n"), Raw: true},
		} {
			want := wantEnvelope(t, m)
			if got := m.Envelope(); !bytes.Equal(got, want) {
				t.Errorf("Envelope\n got %s\nwant %s", got, want)
			}
			if got := m.AppendEnvelope([]byte("prefix")); !bytes.Equal(got, append([]byte("prefix"), want...)) {
				t.Errorf("AppendEnvelope does not append: %s", got)
			}
		}
	}
}

// FuzzEncode holds the hand-written encoders to encoding/json's bytes for
// any strings and any (compact) JSON payload.
func FuzzEncode(f *testing.F) {
	for _, s := range encodeStrings {
		f.Add(s, s, `{"a":1}`, int64(7))
	}
	f.Add("user-1", "comment", ` [1, {"x": "y z"}] `, int64(-1))
	f.Add("0", "0", `{"&":"<\u2028>"}`, int64(184))
	f.Fuzz(func(t *testing.T, s1, s2, data string, seq int64) {
		raw := json.RawMessage(nil)
		if data != "" {
			if !json.Valid([]byte(data)) {
				return // payloads are valid JSON by the time they are encoded
			}
			raw = CompactJSON(json.RawMessage(data)) // as ingest keeps them
		}
		created := time.Unix(0, seq%(1<<62)).UTC()
		n := &Notification{ID: s1, Seq: seq, User: s2, Type: s1, Title: s2, Body: s1, URL: s2,
			Data: raw, Group: s1, CreatedAt: created}
		if created.Year() < 0 || created.Year() > 9999 {
			return // encoding/json refuses such a time; never stored
		}
		if got, want := n.AppendJSON(nil), wantNotification(t, n); !bytes.Equal(got, want) {
			t.Fatalf("AppendJSON\n got %q\nwant %q", got, want)
		}
		m := &Message{Channel: s1, Event: s2, ID: s1, Data: raw}
		if got, want := m.Envelope(), wantEnvelope(t, m); !bytes.Equal(got, want) {
			t.Fatalf("Envelope\n got %q\nwant %q", got, want)
		}
	})
}

// BenchmarkNotificationJSON encodes a notification as the inbox does for
// every delivery; /reflect is encoding/json on the same struct, the
// baseline, in the same run.
func BenchmarkNotificationJSON(b *testing.B) {
	n := &Notification{ID: "01JDB0Q3W8M4T5Z6Y7X8V9N0PQ", Seq: 1234, User: "user-1001", Type: "comment",
		Title: "New comment on your post", Body: "Ada: looks good to me!", URL: "/posts/42#c7",
		Data: json.RawMessage(`{"post":42,"comment":7}`), CreatedAt: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = n.AppendJSON(nil)
		}
	})
	b.Run("reflect", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = json.Marshal((*plainNotification)(n))
		}
	})
}

func TestCompactJSON(t *testing.T) {
	for in, want := range map[string]string{
		`{"a":1}`:                               `{"a":1}`,
		" { \"a\" : [1, 2] ,\n\"b\":\"x y\" } ": `{"a":[1,2],"b":"x y"}`,
		`{"<&>":"</script>"}`:                   `{"\u003c\u0026\u003e":"\u003c/script\u003e"}`,
		"\"line\u2028sep\"":                     `"line\u2028sep"`,
		`{"a":`:                                 `{"a":`, // not JSON: unchanged
	} {
		if got := string(CompactJSON(json.RawMessage(in))); got != want {
			t.Errorf("CompactJSON(%q) = %q, want %q", in, got, want)
		}
		// The form encoding/json itself gives a json.RawMessage.
		if json.Valid([]byte(in)) {
			ref, _ := json.Marshal(json.RawMessage(in))
			if string(ref) != want {
				t.Errorf("encoding/json gives %q for %q", ref, in)
			}
		}
	}
}
