package sqlitestore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidings/tidings"
)

// The benchmarks measure durable appends on the real file system: every
// Append waits for its COMMIT and fsync, so the serial figure is bounded
// by the disk's sync latency and the parallel one shows what group commit
// gains over it. Each also reports the process CPU time per notification,
// which, unlike the rate, hardly depends on the disk.

func BenchmarkAppend(b *testing.B) {
	s := openTest(b, filepath.Join(b.TempDir(), "tidings.db"), Options{PurgeEvery: -1})
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		n := tidings.NewNotification{ID: fmt.Sprintf("b-%d", i), User: "user-1", Type: "t",
			Title: "benchmark", Body: "a notification of typical size"}
		if _, err := s.Append(ctx, []tidings.NewNotification{n}); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, b.N, cpuTime()-cpu0)
}

func BenchmarkAppendParallel(b *testing.B) {
	s := openTest(b, filepath.Join(b.TempDir(), "tidings.db"), Options{PurgeEvery: -1})
	ctx := context.Background()
	var ids, workers atomic.Int64
	// Many concurrent publishers (16 per CPU), as behind a busy HTTP API.
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
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
	reportRate(b, b.N, cpuTime()-cpu0)
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
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		for j := range batch {
			batch[j] = tidings.NewNotification{ID: fmt.Sprintf("c-%d-%d", i, j), User: fmt.Sprintf("user-%d", j),
				Type: "t", Title: "benchmark", Body: "a notification of typical size"}
		}
		if _, err := s.Append(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, b.N*size, cpuTime()-cpu0)
}

// reportRate reports notifications/s and the process CPU time (user plus
// system, all goroutines: callers, writer, SQLite) per notification.
func reportRate(b *testing.B, notifications int, cpu time.Duration) {
	b.ReportMetric(float64(notifications)/b.Elapsed().Seconds(), "notifications/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/1e3/float64(notifications), "µs-CPU/notification")
}

// BenchmarkAppendSustained stores 240,000 notifications in 1,000-user
// batches (one Append of 1,000 users per call, as BenchmarkAppendBatch)
// into one store and reports each 40,000-row segment on its own: the rate
// must hold as the database grows, not only on an empty one. Each b.N
// iteration is a fresh store and the whole run; run it with -benchtime=1x.
//
// Besides the rate it reports, per segment, what a commit costs: WAL
// frames (pages) per commit, read from the wal-index header in the -shm
// file; bytes the process handed to write(2) per notification (WAL frames
// and checkpoint writes, from /proc/self/io); and process CPU time per
// notification (getrusage). The last segment's figures are also reported
// as metrics.
func BenchmarkAppendSustained(b *testing.B) {
	shapes := []struct {
		name string
		make func(i, j int) tidings.NewNotification
	}{
		// The shape of BenchmarkAppendBatch.
		{"small", func(i, j int) tidings.NewNotification {
			return tidings.NewNotification{ID: fmt.Sprintf("c-%d-%d", i, j), User: fmt.Sprintf("user-%d", j),
				Type: "t", Title: "benchmark", Body: "a notification of typical size"}
		}},
		// A fuller one: about 450 bytes of title, body, URL, data and group.
		{"typical", func(i, j int) tidings.NewNotification {
			return tidings.NewNotification{ID: fmt.Sprintf("01J%016d%07d", i, j), User: fmt.Sprintf("user-%06d", j),
				Type: "comment.created", Title: fmt.Sprintf("New comment on \"Quarterly report %d\"", i),
				Body:  strings.Repeat("Someone replied to your comment in the thread. ", 4),
				URL:   fmt.Sprintf("https://app.example.com/projects/42/threads/%d#comment-%d", i, j),
				Data:  json.RawMessage(fmt.Sprintf(`{"project":42,"thread":%d,"comment":%d,"author":{"id":"u-%d","name":"Some One"}}`, i, j, j)),
				Group: fmt.Sprintf("thread:%d", i)}
		}},
	}
	for _, sh := range shapes {
		b.Run(sh.name, func(b *testing.B) {
			for range b.N {
				runSustained(b, sh.make)
			}
		})
	}
}

func runSustained(b *testing.B, mk func(i, j int) tidings.NewNotification) {
	const (
		users    = 1000
		segment  = 40_000
		segments = 6
	)
	b.StopTimer()
	path := filepath.Join(b.TempDir(), "tidings.db")
	s, err := Open(context.Background(), Options{Path: path, PurgeEvery: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	batch := make([]tidings.NewNotification, users)
	call := 0
	b.StartTimer()
	for seg := range segments {
		var frames int64
		io0, cpu0, t0 := writtenBytes(), cpuTime(), time.Now()
		for range segment / users {
			for j := range batch {
				batch[j] = mk(call, j)
			}
			h0 := walIndex(b, path)
			if _, err := s.Append(ctx, batch); err != nil {
				b.Fatal(err)
			}
			h1 := walIndex(b, path)
			if h1.salt != h0.salt { // the WAL restarted from its start
				frames += int64(h1.mxFrame)
			} else {
				frames += int64(h1.mxFrame) - int64(h0.mxFrame)
			}
			call++
		}
		elapsed, cpu, io1 := time.Since(t0), cpuTime()-cpu0, writtenBytes()
		commits := float64(segment / users)
		rate := segment / elapsed.Seconds()
		perCommit := float64(frames) / commits
		wrote := float64(io1-io0) / segment
		cpuPer := float64(cpu.Microseconds()) / segment
		b.Logf("rows %6d-%6d: %7.0f notifications/s, %6.0f WAL frames/commit, %6.0f B written/notification, %5.1f µs CPU/notification",
			seg*segment, (seg+1)*segment, rate, perCommit, wrote, cpuPer)
		if seg == segments-1 {
			b.ReportMetric(rate, "last-seg-notifications/s")
			b.ReportMetric(perCommit, "last-seg-frames/commit")
			b.ReportMetric(wrote, "last-seg-B-written/notification")
			b.ReportMetric(cpuPer, "last-seg-µs-CPU/notification")
		}
	}
	b.StopTimer()
	if st, err := os.Stat(path); err == nil {
		b.Logf("database file: %.1f MiB", float64(st.Size())/(1<<20))
	}
}

// walIndexHeader is the part of SQLite's wal-index header (the start of
// the -shm file, native byte order) the benchmark reads.
type walIndexHeader struct {
	mxFrame uint32    // last valid frame in the WAL
	salt    [2]uint32 // changes whenever the WAL restarts from its start
}

func walIndex(b *testing.B, path string) walIndexHeader {
	f, err := os.Open(path + "-shm")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var buf [48]byte
	if _, err := io.ReadFull(f, buf[:]); err != nil {
		b.Fatal(err)
	}
	return walIndexHeader{
		mxFrame: binary.NativeEndian.Uint32(buf[16:]),
		salt:    [2]uint32{binary.NativeEndian.Uint32(buf[32:]), binary.NativeEndian.Uint32(buf[36:])},
	}
}

// writtenBytes is what this process has handed to write(2) and its kin
// so far; zero where /proc is absent.
func writtenBytes() int64 {
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "wchar: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}
