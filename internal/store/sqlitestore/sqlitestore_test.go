package sqlitestore

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t testing.TB) tidings.Store {
		return openTest(t, filepath.Join(t.TempDir(), "tidings.db"), Options{})
	})
}

// openTest opens a store at path and closes it when the test ends.
func openTest(t testing.TB, path string, opt Options) *Store {
	t.Helper()
	opt.Path = path
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	s, err := Open(context.Background(), opt)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

var testIDs atomic.Int64

func newNote(user, title string) tidings.NewNotification {
	return tidings.NewNotification{ID: fmt.Sprintf("sq-%08d", testIDs.Add(1)), User: user, Type: "t", Title: title}
}

func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "nested", "dir", "tidings.db") // directories are created
	s, err := Open(ctx, Options{Path: path, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	keyed := newNote("alice", "keyed")
	keyed.IdempotencyKey = "k"
	first, err := s.Append(ctx, []tidings.NewNotification{keyed, newNote("alice", "2"), newNote("alice", "3")})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.MarkRead(ctx, "alice", []string{first[0].ID}, false); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "alice", first[2].ID); err != nil { // the newest: its seq must stay used
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openTest(t, path, Options{})
	p, err := s.List(ctx, "alice", tidings.ListQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Items) != 2 || p.Items[0].Seq != 2 || p.Items[1].Seq != 1 || p.LastSeq != 3 || p.Unread != 1 {
		t.Fatalf("after reopen: %d items, last %d, unread %d", len(p.Items), p.LastSeq, p.Unread)
	}
	if p.Items[1].ReadAt == nil || p.Items[1].ID != first[0].ID {
		t.Fatalf("after reopen: read state lost: %+v", p.Items[1])
	}
	got, err := s.Append(ctx, []tidings.NewNotification{newNote("alice", "4")})
	if err != nil || got[0].Seq != 4 {
		t.Fatalf("append after reopen: %v, %v; want seq 4", got, err)
	}
	retry := newNote("alice", "retry")
	retry.IdempotencyKey = "k"
	if got, err := s.Append(ctx, []tidings.NewNotification{retry}); err != nil || got[0].ID != first[0].ID {
		t.Fatalf("idempotency after reopen: %v, %v", got, err)
	}

	var version int
	if err := s.rdb.QueryRow("PRAGMA user_version").Scan(&version); err != nil || version != len(migrations) {
		t.Fatalf("user_version %d, %v; want %d", version, err, len(migrations))
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tidings.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(fmt.Sprintf("PRAGMA user_version = %d", len(migrations)+1)); err != nil {
		t.Fatal(err)
	}
	db.Close()
	for range 2 { // the refused Open leaves nothing held: the second meets the same refusal
		s, err := Open(context.Background(), Options{Path: path})
		if err == nil {
			s.Close()
			t.Fatal("Open accepted a database from a newer schema")
		}
		if !strings.Contains(err.Error(), "newer than this build knows") {
			t.Fatalf("Open: %v", err)
		}
	}
}

// blockOp holds the writer until released, so a test can line up several
// requests behind it and have them taken as one group.
type blockOp struct {
	opBase
	started, release chan struct{}
}

func (o *blockOp) apply(*writer, time.Time) error {
	close(o.started)
	<-o.release
	return nil
}

// syncBuffer is a log destination safe for the writer goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestFailedRequestDoesNotFailItsGroup(t *testing.T) {
	var logs syncBuffer
	s := openTest(t, filepath.Join(t.TempDir(), "tidings.db"),
		Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx := context.Background()
	existing, err := s.Append(ctx, []tidings.NewNotification{newNote("carol", "taken id")})
	if err != nil {
		t.Fatal(err)
	}

	block := &blockOp{opBase: newBase(ctx, 1), started: make(chan struct{}), release: make(chan struct{})}
	go func() { _ = s.do(ctx, block) }()
	<-block.started

	// Queued behind the block: two good calls and one whose id is taken,
	// which fails the UNIQUE index inside the transaction.
	bad := newNote("bob", "duplicate id")
	bad.ID = existing[0].ID
	calls := [][]tidings.NewNotification{
		{newNote("alice", "good 1"), newNote("bob", "good 1")},
		{bad},
		{newNote("alice", "good 2")},
	}
	errs := make([]error, len(calls))
	var wg sync.WaitGroup
	for i, c := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.Append(ctx, c)
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(s.w.reqs) < len(calls) {
		if time.Now().After(deadline) {
			t.Fatal("requests never queued")
		}
		time.Sleep(time.Millisecond)
	}
	close(block.release)
	wg.Wait()

	if errs[0] != nil || errs[2] != nil {
		t.Fatalf("good calls failed with the bad one: %v, %v", errs[0], errs[2])
	}
	if errs[1] == nil {
		t.Fatal("the call with a duplicate id succeeded")
	}
	if !strings.Contains(logs.String(), "group commit failed") {
		t.Fatalf("the three calls were not grouped (no group failure logged):\n%s", logs.String())
	}
	// The good calls are stored once, with consecutive seqs; bob's failed
	// call used no seq.
	for user, want := range map[string]int{"alice": 2, "bob": 1} {
		p, err := s.List(ctx, user, tidings.ListQuery{})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Items) != want || p.LastSeq != int64(want) {
			t.Fatalf("%s: %d items, last seq %d; want %d", user, len(p.Items), p.LastSeq, want)
		}
	}
}

func TestCancelledContext(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "tidings.db"), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Append(ctx, []tidings.NewNotification{newNote("alice", "x")}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with a cancelled context: %v", err)
	}
	if err := s.Delete(ctx, "alice", "x"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Delete with a cancelled context: %v", err)
	}
	if p, err := s.List(context.Background(), "alice", tidings.ListQuery{}); err != nil || p.LastSeq != 0 {
		t.Fatalf("a cancelled Append was stored: %+v, %v", p, err)
	}
}

func TestCloseFinishesQueuedWork(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tidings.db")
	s, err := Open(context.Background(), Options{Path: path, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	const callers = 32
	var ok atomic.Int64
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Append(context.Background(), []tidings.NewNotification{newNote("alice", fmt.Sprint(i))})
			switch {
			case err == nil:
				ok.Add(1)
			case !errors.Is(err, ErrClosed):
				t.Errorf("append during Close: %v", err)
			}
		}()
	}
	time.Sleep(time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	s = openTest(t, path, Options{})
	p, err := s.List(context.Background(), "alice", tidings.ListQuery{Limit: callers})
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(p.Items)) != ok.Load() || p.LastSeq != ok.Load() {
		t.Fatalf("%d appends succeeded, %d stored (last seq %d)", ok.Load(), len(p.Items), p.LastSeq)
	}
}

func TestPurge(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "tidings.db"), Options{PurgeEvery: 10 * time.Millisecond})
	ctx := context.Background()
	past := time.Now().Add(-time.Minute)
	gone := newNote("alice", "expired")
	gone.ExpiresAt = &past
	if _, err := s.Append(ctx, []tidings.NewNotification{newNote("alice", "live"), gone}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var rows int
		if err := s.rdb.QueryRow("SELECT count(*) FROM notifications").Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if rows == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("expired row not purged: %d rows", rows)
		}
		time.Sleep(10 * time.Millisecond)
	}
	p, err := s.List(ctx, "alice", tidings.ListQuery{})
	if err != nil || len(p.Items) != 1 || p.LastSeq != 2 || p.Unread != 1 {
		t.Fatalf("after purge: %+v, %v; want one item, last seq 2, unread 1", p, err)
	}
	// The purged row was unread: the counter lost it too.
	checkUnread(t, s, "alice", "after purge")
	if n, err := s.Append(ctx, []tidings.NewNotification{newNote("alice", "next")}); err != nil || n[0].Seq != 3 {
		t.Fatalf("append after purge: %v, %v; want seq 3", n, err)
	}
}

func TestQueryPlans(t *testing.T) {
	// The hot reads must use their indexes, not scan the table.
	s := openTest(t, filepath.Join(t.TempDir(), "tidings.db"), Options{})
	plans := map[string]struct{ query, uses string }{
		"list": {`SELECT ` + columns + ` FROM notifications
			WHERE user = :user AND seq < 10 AND ` + notExpired + ` ORDER BY seq DESC LIMIT 5`, "INDEX notifications_user_seq"},
		// The unread count reads the user's user_seq row, the highest seq
		// from the (user, seq) index and, for the expired rows it takes
		// off, only the index of unread rows that expire.
		"unread":            {`SELECT ` + unreadCount, "COVERING INDEX notifications_expiring_unread"},
		"unread's last seq": {`SELECT ` + unreadCount, "COVERING INDEX notifications_user_seq"},
		"unread's counter":  {`SELECT ` + unreadCount, "SEARCH user_seq USING PRIMARY KEY"},
		"mark all": {`SELECT pk FROM notifications WHERE user = :user AND read_at IS NULL AND ` + notExpired + `
			ORDER BY seq DESC LIMIT 3`, "INDEX notifications_user_seq"},
		"mark ids": {`SELECT id FROM notifications WHERE id IN (SELECT value FROM json_each('["x"]'))
			AND +user = :user AND read_at IS NULL AND ` + notExpired, "INDEX notifications_id"},
		"last seqs":        {strings.Replace(lastSeqsQuery, "?", `'["a"]'`, 1), "SEARCH user_seq USING PRIMARY KEY"},
		"last seqs' index": {strings.Replace(lastSeqsQuery, "?", `'["a"]'`, 1), "COVERING INDEX notifications_user_seq"},
		"purge":            {`SELECT pk FROM notifications WHERE expires_at <= 5 LIMIT 10`, "INDEX notifications_expires"},
	}
	for name, p := range plans {
		rows, err := s.rdb.Query("EXPLAIN QUERY PLAN "+p.query, sql.Named("user", "a"), sql.Named("now", 0))
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		text := strings.Join(plan, "; ")
		if !strings.Contains(text, p.uses) || strings.Contains(text, "TEMP B-TREE") ||
			strings.Contains(text, "SCAN notifications") {
			t.Errorf("%s: plan %q, want it to use %s", name, text, p.uses)
		}
	}
}

// probeOp runs a query on the write connection, inside the writer, where
// per-connection settings such as synchronous can be seen.
type probeOp struct {
	opBase
	query string
	out   string
}

func (o *probeOp) apply(w *writer, _ time.Time) error {
	return w.conn.QueryRowContext(context.Background(), o.query).Scan(&o.out)
}

func TestDurabilitySettings(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "tidings.db"), Options{})
	for query, want := range map[string]string{
		"PRAGMA journal_mode": "wal",
		"PRAGMA synchronous":  "2", // FULL: every COMMIT asks for a WAL sync
		// (the syncer does it), a checkpoint or new WAL header for a full one
		"PRAGMA checkpoint_fullfsync": "1",
		"PRAGMA busy_timeout":         fmt.Sprint(busyTimeoutMillis),
		// A new database gets the page size, WAL checkpoint and writer
		// cache the write path is tuned for.
		"PRAGMA page_size":          fmt.Sprint(pageSize),
		"PRAGMA wal_autocheckpoint": "0", // the checkpointer does it
		"PRAGMA cache_size":         fmt.Sprint(-writerCacheKiB),
	} {
		o := &probeOp{opBase: newBase(context.Background(), 1), query: query}
		if err := s.do(context.Background(), o); err != nil {
			t.Fatal(err)
		}
		if o.out != want {
			t.Errorf("%s on the write connection = %s, want %s", query, o.out, want)
		}
	}
	// The checkpointer sees the writer's WAL through the shim (else SQLite
	// would checkpoint inside commits again).
	if findWAL(s.w.walPath) == nil {
		t.Error("the writer's WAL is not open through the VFS shim")
	}
	// Readers must not be able to write behind the writer's back.
	if _, err := s.rdb.Exec("DELETE FROM user_seq"); err == nil {
		t.Error("a read connection could write")
	}
}

// One Store at a time writes a database: a second Open of the same path,
// in this process or another, fails while the first is open, and the seq
// of a deleted newest row is still never handed out again.
func TestOneStorePerDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tidings.db")
	s, err := Open(context.Background(), Options{Path: path, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	got, err := s.Append(ctx, []tidings.NewNotification{newNote("alice", "1"), newNote("alice", "2")})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "alice", got[1].ID); err != nil {
		t.Fatal(err)
	}
	second, err := Open(ctx, Options{Path: path, Logger: slog.New(slog.DiscardHandler)})
	if err == nil {
		second.Close()
		t.Fatal("a second Store opened the database")
	}
	if !strings.Contains(err.Error(), "in use by another Tidings process") {
		t.Fatalf("second Open: %v", err)
	}
	n, err := s.Append(ctx, []tidings.NewNotification{newNote("alice", "3")})
	if err != nil || n[0].Seq != 3 {
		t.Fatalf("append after the refused Open: %v, seq %d, want 3", err, n[0].Seq)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Closed, the database opens again, and the deleted seq 2 stays used.
	s = openTest(t, path, Options{})
	if err := s.Delete(ctx, "alice", n[0].ID); err != nil {
		t.Fatal(err)
	}
	n, err = s.Append(ctx, []tidings.NewNotification{newNote("alice", "4")})
	if err != nil || n[0].Seq != 4 {
		t.Fatalf("append after reopening: %v, seq %d, want 4", err, n[0].Seq)
	}
}

// TestUnreadCounter runs a random mix of every write against a few users
// and checks, after each step, that the unread counter (last seq less
// user_seq.consumed) is the number of the user's unread rows and that Unread and List count exactly the unread,
// unexpired rows.
func TestUnreadCounter(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "tidings.db"), Options{PurgeEvery: -1})
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	users := []string{"ann", "ben", "cid"}
	past, future := time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	for step := range 400 {
		user := users[rng.IntN(len(users))]
		var what string
		switch r := rng.IntN(10); {
		case r < 4:
			what = "append"
			batch := make([]tidings.NewNotification, 1+rng.IntN(4))
			for i := range batch {
				u := user
				if rng.IntN(3) == 0 {
					u = users[rng.IntN(len(users))]
				}
				batch[i] = newNote(u, "n")
				switch rng.IntN(4) {
				case 0:
					batch[i].ExpiresAt = &past
				case 1:
					batch[i].ExpiresAt = &future
				}
				if rng.IntN(4) == 0 {
					batch[i].IdempotencyKey = fmt.Sprint("k", rng.IntN(5))
				}
			}
			if _, err := s.Append(ctx, batch); err != nil {
				t.Fatal(err)
			}
		case r < 6:
			what = "mark ids"
			var ids []string
			for range 1 + rng.IntN(3) {
				ids = append(ids, randomID(t, s, users[rng.IntN(len(users))], rng))
			}
			if _, _, err := s.MarkRead(ctx, user, ids, false); err != nil && !errors.Is(err, tidings.ErrNotFound) {
				t.Fatal(err)
			}
		case r < 7:
			what = "mark all"
			if _, _, err := s.MarkRead(ctx, user, nil, true); err != nil {
				t.Fatal(err)
			}
		case r < 9:
			what = "delete"
			if err := s.Delete(ctx, user, randomID(t, s, user, rng)); err != nil && !errors.Is(err, tidings.ErrNotFound) {
				t.Fatal(err)
			}
		default:
			what = "purge"
			if err := s.do(ctx, &purgeOp{opBase: newBase(ctx, 1), limit: 1 + rng.IntN(3)}); err != nil {
				t.Fatal(err)
			}
		}
		for _, u := range users {
			checkUnread(t, s, u, fmt.Sprintf("step %d (%s)", step, what))
		}
	}
}

// randomID picks the id of any row of user, expired or not, or one that
// does not exist.
func randomID(t *testing.T, s *Store, user string, rng *rand.Rand) string {
	t.Helper()
	var id string
	err := s.rdb.QueryRow(`SELECT id FROM notifications WHERE user = ? ORDER BY random() LIMIT 1`, user).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) || rng.IntN(8) == 0 {
		return "no-such-id"
	}
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func checkUnread(t *testing.T, s *Store, user, when string) {
	t.Helper()
	var counter, rows, live int
	if err := s.rdb.QueryRow(`SELECT `+lastSeqOf+` - coalesce((SELECT consumed FROM user_seq WHERE user = :user), 0),
		(SELECT count(*) FROM notifications WHERE user = :user AND read_at IS NULL),
		(SELECT count(*) FROM notifications WHERE user = :user AND read_at IS NULL AND `+notExpired+`)`,
		sql.Named("user", user), sql.Named("now", time.Now().UnixMilli())).Scan(&counter, &rows, &live); err != nil {
		t.Fatal(err)
	}
	if counter != rows {
		t.Fatalf("%s: %s's unread counter is %d, but %d rows are unread", when, user, counter, rows)
	}
	n, err := s.Unread(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.List(context.Background(), user, tidings.ListQuery{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if n != live || p.Unread != live {
		t.Fatalf("%s: %s's Unread %d, List unread %d; want %d", when, user, n, p.Unread, live)
	}
}
