package sqlitestore

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/tidings/tidings"
)

// The benchmarks measure durable appends on the real file system: every
// Append waits for its COMMIT and fsync, so the serial figure is bounded
// by the disk's sync latency and the parallel one shows what group commit
// gains over it.

func BenchmarkAppend(b *testing.B) {
	s := openTest(b, filepath.Join(b.TempDir(), "tidings.db"), Options{PurgeEvery: -1})
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		n := tidings.NewNotification{ID: fmt.Sprintf("b-%d", i), User: "user-1", Type: "t",
			Title: "benchmark", Body: "a notification of typical size"}
		if _, err := s.Append(ctx, []tidings.NewNotification{n}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "notifications/s")
}

func BenchmarkAppendParallel(b *testing.B) {
	s := openTest(b, filepath.Join(b.TempDir(), "tidings.db"), Options{PurgeEvery: -1})
	ctx := context.Background()
	var ids, workers atomic.Int64
	// Many concurrent publishers (16 per CPU), as behind a busy HTTP API.
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := workers.Add(1)
		for i := 0; pb.Next(); i++ {
			n := tidings.NewNotification{ID: fmt.Sprintf("p-%d", ids.Add(1)),
				User: fmt.Sprintf("user-%d-%d", w, i%8), Type: "t",
				Title: "benchmark", Body: "a notification of typical size"}
			if _, err := s.Append(ctx, []tidings.NewNotification{n}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "notifications/s")
}

// BenchmarkAppendBatch stores 1,000 notifications for 1,000 users per call,
// as one POST /v1/notifications with 1,000 users does: one transaction and
// one fsync for all of them. ns/op is per call; notifications/s is reported.
func BenchmarkAppendBatch(b *testing.B) {
	s := openTest(b, filepath.Join(b.TempDir(), "tidings.db"), Options{PurgeEvery: -1})
	ctx := context.Background()
	const size = 1000
	batch := make([]tidings.NewNotification, size)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range batch {
			batch[j] = tidings.NewNotification{ID: fmt.Sprintf("c-%d-%d", i, j), User: fmt.Sprintf("user-%d", j),
				Type: "t", Title: "benchmark", Body: "a notification of typical size"}
		}
		if _, err := s.Append(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "notifications/s")
}
