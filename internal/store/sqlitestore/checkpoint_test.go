package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tidings/tidings"
)

// Under appends that never pause, with readers beside them, the WAL is
// copied back and starts over again and again (the checkpointer's passes,
// then the writer's tail), stays near its limit, and nothing is lost.
func TestCheckpointKeepsWALBounded(t *testing.T) {
	const limit = 256 << 10
	path := filepath.Join(t.TempDir(), "tidings.db")
	opt := Options{Path: path}
	opt.checkpointBytes = limit
	s := openTest(t, path, opt)
	ctx := context.Background()

	stop := make(chan struct{})
	var readers sync.WaitGroup
	readErr := make(chan error, 4)
	for r := range 4 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.List(ctx, fmt.Sprintf("u%d", (i*7+r)%200), tidings.ListQuery{}); err != nil {
					readErr <- err
					return
				}
			}
		}()
	}

	const users = 200
	var restarts, batches int
	var maxWAL int64
	last := s.w.walBytes()
	for batches = 0; restarts < 4 && batches < 3000; batches++ {
		items := make([]tidings.NewNotification, users)
		for u := range items {
			items[u] = newNote(fmt.Sprintf("u%d", u), "x")
		}
		if _, err := s.Append(ctx, items); err != nil {
			t.Fatal(err)
		}
		end := s.w.walBytes()
		if end < last {
			restarts++
		}
		last = end
		if st, err := os.Stat(path + "-wal"); err == nil {
			maxWAL = max(maxWAL, st.Size())
		}
	}
	close(stop)
	readers.Wait()
	select {
	case err := <-readErr:
		t.Fatalf("a reader failed beside the checkpoints: %v", err)
	default:
	}
	if restarts < 4 {
		t.Fatalf("the WAL started over %d times in %d batches; want 4", restarts, batches)
	}
	if s.w.tailCopies.Load() == 0 {
		t.Fatal("the writer never copied a tail")
	}
	t.Logf("%d batches, %d restarts, WAL file up to %d bytes, %d tails", batches, restarts, maxWAL, s.w.tailCopies.Load())
	if maxWAL > 16*limit {
		t.Fatalf("the WAL file reached %d bytes with a limit of %d", maxWAL, limit)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	db := reopenChecked(t, path)
	var n, lo, hi int
	if err := db.QueryRow("SELECT count(*), min(c), max(c) FROM (SELECT count(*) c FROM notifications GROUP BY user)").Scan(&n, &lo, &hi); err != nil {
		t.Fatal(err)
	}
	if n != users || lo != batches || hi != batches {
		t.Fatalf("after reopening: %d users with %d..%d rows each; want %d with %d", n, lo, hi, users, batches)
	}
}

// A read that stays on the WAL holds up a round's tail for a moment, not
// the writer for its whole busy timeout: appends go on.
func TestCheckpointTailDoesNotWaitForLongReads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tidings.db")
	opt := Options{Path: path}
	opt.checkpointBytes = 64 << 10
	s := openTest(t, path, opt)
	ctx := context.Background()
	if _, err := s.Append(ctx, []tidings.NewNotification{newNote("u0", "x")}); err != nil {
		t.Fatal(err)
	}
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRow("SELECT count(*) FROM notifications").Scan(&n); err != nil {
		t.Fatal(err)
	}
	for i := 0; s.w.tailCopies.Load() < 3; i++ {
		if i == 500 {
			t.Fatalf("no three checkpoint tails in %d batches", i)
		}
		items := make([]tidings.NewNotification, 100)
		for u := range items {
			items[u] = newNote(fmt.Sprintf("u%d", u), "x")
		}
		// Far below the writer's 10 s busy timeout, far above a tail's wait.
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := s.Append(actx, items)
		cancel()
		if err != nil {
			t.Fatalf("append %d with a read open on the WAL: %v", i, err)
		}
	}
}

// The checkpointer finds the WAL when the data directory is reached
// through a symbolic link (SQLite opens the WAL by its resolved name).
func TestCheckpointThroughSymlink(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "real"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "real"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "link", "tidings.db")
	opt := Options{Path: path}
	opt.checkpointBytes = 64 << 10
	s := openTest(t, path, opt)
	ctx := context.Background()
	for i := 0; s.w.tailCopies.Load() == 0; i++ {
		if i == 500 {
			t.Fatalf("no checkpoint round in %d batches (WAL %d bytes as the writer sees it)", i, s.w.walBytes())
		}
		items := make([]tidings.NewNotification, 50)
		for u := range items {
			items[u] = newNote(fmt.Sprintf("u%d", u), "x")
		}
		if _, err := s.Append(ctx, items); err != nil {
			t.Fatal(err)
		}
	}
}
