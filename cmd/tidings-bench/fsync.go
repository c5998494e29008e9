//go:build linux

package main

// fsync: the disk's price of one durable commit on this machine, with no
// server in the way. The tool writes a small commit's worth of bytes to a
// file in --dir and syncs it (write(2) then fsync(2), as SQLite commits
// to its write-ahead log), at a rate, for a duration: the least a
// notification acknowledged only once stored must wait here. The
// personal scenario's latency is read against this.

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

type fsyncResult struct {
	Scenario  string    `json:"scenario"`
	Dir       string    `json:"dir"`
	Bytes     int       `json:"bytes_per_commit"`
	Rate      float64   `json:"rate"`
	Grow      bool      `json:"grow"` // each commit appended (a log that grows); else rewritten in place
	DurationS float64   `json:"duration_s"`
	Commits   int       `json:"commits"`
	Sync      latencies `json:"sync"` // one write and its fsync
	P999      float64   `json:"p999_ms"`
	Over5ms   int       `json:"over_5ms"`
}

func runFsync(args []string) error {
	fs := flag.NewFlagSet("fsync", flag.ExitOnError)
	dir := fs.String("dir", os.TempDir(), "directory on the filesystem to measure (where the data directory would be)")
	size := fs.Int("bytes", 8192, "bytes written per commit")
	rate := fs.Float64("rate", 1000, "commits per second at most")
	duration := fs.Duration("duration", 10*time.Second, "how long to commit")
	grow := fs.Bool("grow", false, "append every commit (a log growing from empty) instead of rewriting the same 16 MiB")
	_ = fs.Parse(args)
	if *size <= 0 || *rate <= 0 || *duration <= 0 {
		return usageError("--bytes, --rate and --duration must be positive")
	}
	res, err := fsyncFloor(*dir, *size, *rate, *duration, *grow)
	if err != nil {
		return err
	}
	how := "rewritten in place"
	if res.Grow {
		how = "appended"
	}
	emit(res, [][2]string{
		{"file", fmt.Sprintf("in %s, %d bytes per commit, %s", res.Dir, res.Bytes, how)},
		{"commits", fmt.Sprintf("%d in %gs (at most %g/s)", res.Commits, res.DurationS, res.Rate)},
		{"write+fsync", fmt.Sprintf("%s, p99.9 %.2f ms", res.Sync, res.P999)},
		{"over 5 ms", fmt.Sprintf("%d", res.Over5ms)},
	})
	return nil
}

func fsyncFloor(dir string, size int, rate float64, duration time.Duration, grow bool) (*fsyncResult, error) {
	f, err := os.CreateTemp(dir, "tidings-bench-fsync-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	const span = 16 << 20 // the rewritten region
	buf := make([]byte, size)
	if !grow {
		if err := f.Truncate(span); err != nil {
			return nil, err
		}
		for off := int64(0); off < span; off += int64(len(buf)) { // allocate the blocks
			if _, err := f.WriteAt(buf, off); err != nil {
				return nil, err
			}
		}
		if err := f.Sync(); err != nil {
			return nil, err
		}
	}
	period := time.Duration(float64(time.Second) / rate)
	var lat []int64
	var off int64
	start := time.Now()
	for i := 0; time.Since(start) < duration; i++ {
		if wait := time.Until(start.Add(time.Duration(i) * period)); wait > 0 {
			time.Sleep(wait)
		}
		if !grow && off+int64(size) > span {
			off = 0
		}
		t := time.Now()
		if _, err := f.WriteAt(buf, off); err != nil {
			return nil, err
		}
		if err := f.Sync(); err != nil {
			return nil, err
		}
		lat = append(lat, int64(time.Since(t)))
		off += int64(size)
	}
	res := &fsyncResult{Scenario: "fsync", Dir: filepath.Clean(dir), Bytes: size, Rate: rate, Grow: grow,
		DurationS: duration.Seconds(), Commits: len(lat)}
	for _, l := range lat {
		if l > int64(5*time.Millisecond) {
			res.Over5ms++
		}
	}
	res.Sync = summarise(lat) // sorts
	res.P999 = ms(percentile(lat, 99.9))
	return res, nil
}
