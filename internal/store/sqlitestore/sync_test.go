package sqlitestore

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidings/tidings"
)

// A commit's sync is left to the syncer; a checkpoint's is done by the VFS.
// The split rests on the flags SQLite passes, so it is checked on a real
// store rather than assumed.
func TestCommitSyncLeftToSyncer(t *testing.T) {
	var syncs atomic.Int64
	opt := Options{}
	opt.syncWAL = func() error { syncs.Add(1); return nil }
	s := openTest(t, filepath.Join(t.TempDir(), "tidings.db"), opt)
	ctx := context.Background()
	deferred, done := walDeferredSyncs.Load(), walSyncs.Load()
	if _, err := s.Append(ctx, []tidings.NewNotification{newNote("alice", "x")}); err != nil {
		t.Fatal(err)
	}
	if got := walDeferredSyncs.Load() - deferred; got < 1 {
		t.Errorf("an Append's commit left %d syncs to the syncer, want at least 1", got)
	}
	if got := walSyncs.Load() - done; got != 0 {
		t.Errorf("an Append's commit synced the WAL in the VFS %d times, want 0", got)
	}
	if syncs.Load() < 1 {
		t.Error("the syncer did not sync before the Append was answered")
	}
	// Outside a transaction, on the write connection (idle between ops).
	if _, err := s.w.conn.ExecContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)"); err != nil {
		t.Fatal(err)
	}
	if got := walSyncs.Load() - done; got < 1 {
		t.Errorf("a checkpoint synced the WAL %d times, want at least 1", got)
	}
}

// A caller is answered, and the observer told, only once the sync that
// follows its commit has returned; readers may see the rows before that.
func TestAnsweredAfterSync(t *testing.T) {
	entered := make(chan struct{}, 16)
	release := make(chan struct{})
	opt := Options{}
	opt.syncWAL = func() error {
		entered <- struct{}{}
		<-release
		return nil
	}
	s := openTest(t, filepath.Join(t.TempDir(), "tidings.db"), opt)
	var observed atomic.Int64
	s.ObserveCommits(func(ns []tidings.Notification) { observed.Add(int64(len(ns))) })
	ctx := context.Background()
	answered := make(chan error, 1)
	go func() {
		_, err := s.Append(ctx, []tidings.NewNotification{newNote("alice", "x")})
		answered <- err
	}()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the syncer never synced")
	}
	p, err := s.List(ctx, "alice", tidings.ListQuery{})
	if err != nil || len(p.Items) != 1 {
		t.Fatalf("committed row not visible to readers during the sync: %+v, %v", p, err)
	}
	select {
	case err := <-answered:
		t.Fatalf("Append answered (%v) before its sync returned", err)
	case <-time.After(50 * time.Millisecond):
	}
	if n := observed.Load(); n != 0 {
		t.Fatalf("observer told of %d notifications before the sync returned", n)
	}
	close(release)
	if err := <-answered; err != nil {
		t.Fatal(err)
	}
	if n := observed.Load(); n != 1 {
		t.Fatalf("observer told of %d notifications, want 1", n)
	}
}

// A failed sync fails the callers it would have answered, and every later
// one: after a failed fsync nothing can be promised durable.
func TestFailedSyncIsFinal(t *testing.T) {
	var fail atomic.Bool
	fail.Store(true)
	opt := Options{}
	opt.syncWAL = func() error {
		if fail.Load() {
			return errors.New("disk on fire")
		}
		return nil
	}
	s := openTest(t, filepath.Join(t.TempDir(), "tidings.db"), opt)
	ctx := context.Background()
	if _, err := s.Append(ctx, []tidings.NewNotification{newNote("alice", "x")}); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("Append with a failing sync: %v", err)
	}
	fail.Store(false)
	if _, err := s.Append(ctx, []tidings.NewNotification{newNote("alice", "y")}); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("Append after a failed sync: %v", err)
	}
}

// The observer hears of each stored notification once, in commit order:
// an idempotent repeat, in the same call or a later one, is not news.
func TestObserverSkipsRepeats(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "tidings.db"), Options{})
	var mu sync.Mutex
	var seen []string
	s.ObserveCommits(func(ns []tidings.Notification) {
		mu.Lock()
		defer mu.Unlock()
		for _, n := range ns {
			seen = append(seen, n.Title)
		}
	})
	ctx := context.Background()
	keyed := func(user, title, key string) tidings.NewNotification {
		n := newNote(user, title)
		n.IdempotencyKey = key
		return n
	}
	if _, err := s.Append(ctx, []tidings.NewNotification{
		keyed("ann", "a1", "k1"), newNote("ben", "b1"), keyed("ann", "a1 again", "k1"),
	}); err != nil {
		t.Fatal(err)
	}
	out, err := s.Append(ctx, []tidings.NewNotification{keyed("ann", "a1 retried", "k1"), newNote("ann", "a2")})
	if err != nil {
		t.Fatal(err)
	}
	if out[0].Title != "a1" || out[1].Title != "a2" {
		t.Fatalf("second call answered %q, %q; want the stored a1, then a2", out[0].Title, out[1].Title)
	}
	mu.Lock()
	defer mu.Unlock()
	if got := strings.Join(seen, ","); got != "a1,b1,a2" {
		t.Fatalf("observer heard %s; want a1,b1,a2", got)
	}
}
