package hub

import (
	"encoding/json"
	"sync/atomic"
	"testing"

	"github.com/tidings/tidings"
)

// countSink counts frames; it stands for a socket that always takes the
// write, so the benchmark measures the hub's own cost.
type countSink struct{ n *atomic.Int64 }

func (s countSink) Write(bufs [][]byte) error { s.n.Add(int64(len(bufs))); return nil }
func (s countSink) Close(int, string)         {}

// BenchmarkFanout10k publishes to one channel with 10,000 subscribers and
// waits until every subscriber has the frame: ns/op is the cost of one
// broadcast; deliveries/s is reported.
func BenchmarkFanout10k(b *testing.B) { benchFanout(b, KindWS) }

// BenchmarkFanout10kSSE is the same load for Server-Sent Events
// subscribers: the SSE encoding instead of the WebSocket frame.
func BenchmarkFanout10kSSE(b *testing.B) { benchFanout(b, KindSSE) }

func benchFanout(b *testing.B, kind Kind) {
	const subs = 10000
	h := New(Options{})
	h.Start()
	defer h.Stop()
	var n atomic.Int64
	for i := 0; i < subs; i++ {
		c := h.Attach(kind, countSink{&n})
		if _, err := h.Subscribe(c, "broadcast"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		want := n.Load() + subs
		h.Publish(&tidings.Message{Channel: "broadcast", Event: "tick", ID: "1", Seq: 1, Data: json.RawMessage(`{"n":1}`)})
		for n.Load() < want {
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(subs)*float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
}

// BenchmarkPersonal publishes to 10,000 users' personal channels in turn.
func BenchmarkPersonal(b *testing.B) {
	const users = 10000
	h := New(Options{})
	h.Start()
	defer h.Stop()
	var n atomic.Int64
	chans := make([]string, users)
	for i := range chans {
		chans[i] = tidings.PersonalChannel(string(rune('a'+i%26)) + string(rune(i)))
		c := h.Attach(KindWS, countSink{&n})
		if _, err := h.Subscribe(c, chans[i]); err != nil {
			b.Fatal(err)
		}
	}
	data := json.RawMessage(`{"id":"x","title":"hello"}`)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h.Publish(&tidings.Message{Channel: chans[i%users], Event: "notification", Data: data})
	}
	for n.Load() < int64(b.N) {
	}
}
