package hub

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/tidings/tidings"
)

// benchNotification is a personal notification as the inbox publishes it:
// the stored notification, JSON-encoded, on the user's channel.
func benchNotification(b *testing.B) *tidings.Message {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	n := tidings.Notification{ID: "01JDB0Q3W8M4T5Z6Y7X8V9N0PQ", Seq: 1234, User: "user-1001",
		Type: "comment", Title: "New comment on your post", Body: "Ada: looks good to me!",
		URL: "/posts/42#c7", Data: json.RawMessage(`{"post":42,"comment":7}`), CreatedAt: now}
	data, err := json.Marshal(&n)
	if err != nil {
		b.Fatal(err)
	}
	return &tidings.Message{Channel: tidings.PersonalChannel(n.User), Event: "notification",
		ID: strconv.FormatInt(n.Seq, 10), Seq: n.Seq, Data: data}
}

// BenchmarkFrameWS encodes one message as a WebSocket frame, as the hub
// does once per message per node (and so once per delivery for personal
// notifications).
func BenchmarkFrameWS(b *testing.B) { benchFrame(b, KindWS) }

// BenchmarkFrameSSE is the same for a Server-Sent Events stream.
func BenchmarkFrameSSE(b *testing.B) { benchFrame(b, KindSSE) }

func benchFrame(b *testing.B, kind Kind) {
	m := benchNotification(b)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n += len(NewFrame(m).Bytes(kind))
	}
	b.SetBytes(int64(n / b.N))
}
