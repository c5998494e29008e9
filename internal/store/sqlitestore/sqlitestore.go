// Package sqlitestore is the embedded tidings.Store: one SQLite database
// file (pure Go driver, no cgo), in WAL mode with synchronous=FULL so a
// notification that Append has returned survives a process kill or a power
// cut.
//
// Writes (Append, MarkRead, Delete, the expiry purge) are serialised
// through one writer goroutine that owns the only write connection and
// commits whatever is queued in one transaction (group commit). Reads use a
// separate pool of connections, which WAL lets run beside the writer.
package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/tidings/tidings"
)

// Options configures Open.
type Options struct {
	// Path is the database file, e.g. <data_dir>/tidings.db. It and its
	// directory are created when missing.
	Path string
	// MaxBatch caps the notifications one group commit takes from the
	// queue (default 512). One Append call larger than that still commits
	// as one transaction: a call is all-or-nothing.
	MaxBatch int
	// PurgeEvery is how often expired rows are deleted (default 1m; a
	// negative value disables purging; expired rows stay hidden anyway).
	PurgeEvery time.Duration
	// Logger receives warnings (failed group commits, purge errors);
	// default slog.Default().
	Logger *slog.Logger

	syncWAL         func() error // tests: replaces the syncer's fsync
	checkpointBytes int64        // tests: replaces checkpointBytes
}

const (
	defaultMaxBatch   = 512
	defaultPurgeEvery = time.Minute
	defaultLimit      = 50
	maxLimit          = 500
	purgeChunk        = 1000
	busyTimeoutMillis = 10000

	// pageSize is the page size of a new database; an existing one keeps
	// its own. A commit writes every page it touched to the WAL in full,
	// and a group commit for many users touches one leaf of the (user, seq)
	// index per user, so the page size is most of what a notification
	// costs in WAL bytes. 2 KiB halves that against the default 4 KiB while
	// still keeping a row of a few hundred bytes and its neighbours on one
	// page (a row up to about 2,000 bytes needs no overflow page).
	pageSize = 2048
	// writerCacheKiB is the write connection's page cache. A group commit
	// for 1,000 users dirties over 1,000 pages; a cache smaller than that
	// spills them to the WAL before COMMIT, and the same pages are written
	// again at COMMIT. The readers keep SQLite's default (2 MiB).
	writerCacheKiB = 16 << 10
	// checkpointBytes is how much WAL piles up before the checkpointer
	// copies it back into the database (see checkpoint.go; SQLite's own
	// default is 1,000 pages). A checkpoint copies each page once however
	// many commits changed it, and syncs the database file: the leaves a
	// batch of users touched are mostly the ones the next batches touch
	// again, so a longer WAL means fewer page copies and fewer syncs per
	// notification. The WAL file grows to about this size plus what is
	// written during a checkpoint round, and stays that large (SQLite
	// reuses it from the start).
	checkpointBytes = 64 << 20
)

// ErrClosed is returned by every method called after Close.
var ErrClosed = &tidings.Error{Code: tidings.CodeUnavailable, Msg: "store closed"}

// Store is a tidings.Store on SQLite. Make it with Open.
type Store struct {
	log    *slog.Logger
	wdb    *sql.DB // holds the one write connection, owned by w
	rdb    *sql.DB // read pool
	cdb    *sql.DB // the checkpointer's connection
	w      *writer
	closed atomic.Bool

	// mu orders enqueueing against Close: senders hold it shared while
	// they put a request on the queue, Close holds it exclusively to close
	// the queue, so no send ever hits a closed channel.
	mu       sync.RWMutex
	stopping bool

	quit      chan struct{} // closed by Close: stops the purge loop
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	lock *os.File // the lock file, held while the store is open (lockStore)
}

var _ tidings.Store = (*Store)(nil)

// Open opens (creating if needed) the database at opt.Path, applies schema
// migrations and starts the writer and the purge loop. Close the Store to
// stop them.
func Open(ctx context.Context, opt Options) (_ *Store, err error) {
	if opt.Path == "" {
		return nil, errors.New("sqlitestore: Options.Path is required")
	}
	if opt.MaxBatch <= 0 {
		opt.MaxBatch = defaultMaxBatch
	}
	if opt.PurgeEvery == 0 {
		opt.PurgeEvery = defaultPurgeEvery
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	path, err := filepath.Abs(opt.Path)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("sqlitestore: create directory: %w", err)
	}
	lock, err := lockStore(path)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = lock.Close() // last: the database is closed by then
		}
	}()

	// The write connection: FULL so SQLite asks for a sync at every commit
	// (walVFS leaves it to the syncer, see syncLoop), IMMEDIATE so a
	// transaction takes the write lock at BEGIN instead of failing halfway
	// if another connection holds it. WAL (so readers never block the
	// writer) is set on it below, after the page size: the driver runs DSN
	// pragmas in an order of its own. Its WAL writes go through walVFS
	// (walvfs.go), one write per 64 KiB.
	if err := registerWALVFS(); err != nil {
		return nil, err
	}
	// checkpoint_fullfsync marks the syncs a checkpoint or a new WAL
	// header needs (SQLITE_SYNC_FULL), which walVFS performs, apart from a
	// commit's (SQLITE_SYNC_NORMAL), which it leaves to the syncer (see
	// syncLoop).
	wdb, err := sql.Open("sqlite", dsn(path, "vfs="+walVFSName, "_txlock=immediate", "_synchronous=FULL",
		"_pragma=checkpoint_fullfsync(1)",
		"_pragma=foreign_keys(ON)", fmt.Sprintf("_pragma=cache_size(%d)", -writerCacheKiB)))
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: open: %w", err)
	}
	// From here on, a failure closes what is open so far (the deferred
	// closes run last opened first).
	closeOnErr := func(c interface{ Close() error }) {
		if err != nil {
			_ = c.Close()
		}
	}
	defer closeOnErr(wdb)
	wdb.SetMaxOpenConns(1)
	wdb.SetConnMaxIdleTime(0)
	wdb.SetConnMaxLifetime(0)
	conn, err := wdb.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: open %s: %w", opt.Path, err)
	}
	defer closeOnErr(conn)
	if err := setupWAL(ctx, conn); err != nil {
		return nil, fmt.Errorf("sqlitestore: %s: %w", opt.Path, err)
	}
	if err := migrate(ctx, conn); err != nil {
		return nil, fmt.Errorf("sqlitestore: %s: %w", opt.Path, err)
	}
	w, err := newWriter(ctx, conn, path+"-wal", opt.MaxBatch, opt.Logger)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: %w", err)
	}
	defer func() {
		if err != nil {
			w.closeStmts()
		}
	}()
	if opt.syncWAL != nil {
		w.sync = opt.syncWAL
	}
	if opt.checkpointBytes > 0 {
		w.walLimit = opt.checkpointBytes
	}
	var frame int64
	if err := conn.QueryRowContext(ctx, "PRAGMA page_size").Scan(&frame); err != nil {
		return nil, fmt.Errorf("sqlitestore: %s: read page size: %w", opt.Path, err)
	}
	if f := findWAL(w.walPath); f != nil {
		w.walFile.Store(f)
	} else {
		// The checkpointer could not tell how large the WAL grows: let
		// SQLite checkpoint inside commits, as before the checkpointer.
		opt.Logger.Warn("sqlitestore: WAL file not found through the VFS shim; checkpoints run inside commits",
			"wal", w.walPath)
		if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA wal_autocheckpoint = %d", checkpointBytes/frame)); err != nil {
			return nil, fmt.Errorf("sqlitestore: %s: set WAL checkpoint: %w", opt.Path, err)
		}
	}
	frame += walFrameHeaderBytes
	// The checkpointer's connection: a plain one (synchronous=FULL: a
	// checkpoint syncs the WAL before it copies and the database after).
	cdb, err := sql.Open("sqlite", dsn(path, "_synchronous=FULL"))
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: open checkpointer: %w", err)
	}
	defer closeOnErr(cdb)
	cdb.SetMaxOpenConns(1)

	// Read connections: query_only guards against a write slipping past
	// the writer (two writers would fight over the lock).
	rdb, err := sql.Open("sqlite", dsn(path, "_pragma=query_only(1)"))
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: open readers: %w", err)
	}
	readers := max(4, runtime.GOMAXPROCS(0))
	rdb.SetMaxOpenConns(readers)
	rdb.SetMaxIdleConns(readers)

	s := &Store{log: opt.Logger, wdb: wdb, rdb: rdb, cdb: cdb, w: w, lock: lock, quit: make(chan struct{})}
	ck := &checkpointer{db: cdb, w: w, frame: frame, quit: s.quit}
	s.wg.Add(3)
	go func() {
		defer s.wg.Done()
		ck.run()
	}()
	go func() {
		defer s.wg.Done()
		w.run()
		close(w.acks) // the syncer answers what is left, then returns
	}()
	go func() {
		defer s.wg.Done()
		w.syncLoop()
	}()
	if opt.PurgeEvery > 0 {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.purgeLoop(opt.PurgeEvery)
		}()
	}
	return s, nil
}

// setupWAL gives a new database its page size, puts the database in WAL
// mode and turns SQLite's automatic checkpoint off (the checkpointer does
// it; see checkpoint.go). The page size must come first: turning WAL on
// writes the database's first page, and the page size of a WAL database
// never changes after that.
func setupWAL(ctx context.Context, conn *sql.Conn) error {
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA page_size = %d", pageSize)); err != nil {
		return fmt.Errorf("set page size: %w", err)
	}
	var mode string
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(&mode); err != nil || mode != "wal" {
		return fmt.Errorf("WAL mode unavailable (journal_mode=%q): %v", mode, err)
	}
	if _, err := conn.ExecContext(ctx, "PRAGMA wal_autocheckpoint = 0"); err != nil {
		return fmt.Errorf("turn automatic checkpoints off: %w", err)
	}
	return nil
}

// dsn builds a modernc.org/sqlite DSN: a file: URI, so a path with '?',
// '#' or '%' in it is escaped rather than cut, plus driver parameters. Every
// connection gets a busy timeout: a reader opening the WAL, or a second
// process, waits instead of failing with SQLITE_BUSY.
func dsn(absPath string, params ...string) string {
	q := fmt.Sprintf("_pragma=busy_timeout(%d)", busyTimeoutMillis)
	for _, p := range params {
		q += "&" + p
	}
	return "file:" + (&url.URL{Path: filepath.ToSlash(absPath)}).EscapedPath() + "?" + q
}

// Close stops taking requests, finishes every queued one, stops the purge
// loop and closes the database. It is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.mu.Lock()
		s.stopping = true
		close(s.w.reqs) // the writer drains what is queued, then returns
		s.mu.Unlock()
		close(s.quit)
		s.wg.Wait()

		// Let SQLite refresh planner statistics it finds stale, as it
		// advises before closing a long-lived connection; cheap, and
		// failure changes nothing.
		_, _ = s.w.conn.ExecContext(context.Background(), "PRAGMA optimize")
		s.w.closeStmts()
		errs := []error{s.w.conn.Close(), s.wdb.Close(), s.rdb.Close(), s.cdb.Close()}
		if s.w.wal != nil {
			errs = append(errs, s.w.wal.Close())
		}
		errs = append(errs, s.lock.Close()) // last: the database is closed
		if err := errors.Join(errs...); err != nil {
			s.closeErr = fmt.Errorf("sqlitestore: close: %w", err)
		}
	})
	return s.closeErr
}

// Ping checks that the store is open and a read connection answers.
func (s *Store) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	var one int
	if err := s.rdb.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("sqlitestore: ping: %w", err)
	}
	return nil
}

// do hands o to the writer and waits for its answer.
//
// If ctx ends while o is queued or running, do returns ctx.Err() at once,
// but the work may still commit: the writer may already have taken o into
// a transaction that it will not undo for one caller. A caller that sees
// ctx.Err() must treat the outcome as unknown (an idempotency key makes the
// retry safe). A request whose caller gave up before the writer took it is
// dropped.
func (s *Store) do(ctx context.Context, o op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	if s.stopping {
		s.mu.RUnlock()
		return ErrClosed
	}
	select {
	case s.w.reqs <- o:
		s.mu.RUnlock()
	case <-ctx.Done():
		s.mu.RUnlock()
		return ctx.Err()
	}
	select {
	case err := <-o.base().done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Append stores batch durably and returns the stored notifications in the
// same order. It returns only after COMMIT (with synchronous=FULL, after
// the WAL is synced). See do for what a cancelled ctx means.
func (s *Store) Append(ctx context.Context, batch []tidings.NewNotification) ([]tidings.Notification, error) {
	if len(batch) == 0 {
		return []tidings.Notification{}, nil
	}
	// Validate on the caller's goroutine: a bad call never reaches the
	// writer, so it cannot cost a group its commit.
	now := time.Now()
	items := make([]tidings.NewNotification, len(batch))
	for i, n := range batch {
		switch {
		case n.ID == "":
			return nil, tidings.Errorf(tidings.CodeBadRequest, "notification %d: id is required", i)
		case n.User == "":
			return nil, tidings.Errorf(tidings.CodeBadRequest, "notification %d: user is required", i)
		case len(n.Data) > 0 && !json.Valid(n.Data):
			return nil, tidings.Errorf(tidings.CodeBadRequest, "notification %d: data is not valid JSON", i)
		}
		if n.CreatedAt.IsZero() {
			n.CreatedAt = now
		}
		if len(n.Data) == 0 {
			n.Data = nil
		} else {
			// Our own copy: the caller may reuse its buffer after we return.
			n.Data = append(json.RawMessage(nil), n.Data...)
		}
		items[i] = n
	}
	o := &appendOp{opBase: newBase(ctx, len(items)), items: items}
	if err := s.do(ctx, o); err != nil {
		return nil, err
	}
	return o.out, nil
}

// ObserveCommits implements tidings.CommitObserver: fn runs on the writer
// after each commit, before the callers of that commit are answered.
func (s *Store) ObserveCommits(fn func([]tidings.Notification)) { s.w.observer.Store(&fn) }

var _ tidings.CommitObserver = (*Store)(nil)

// MarkRead marks ids (or all) of the user read. It returns the ids that
// changed, in the order given, and the unread count after the change.
func (s *Store) MarkRead(ctx context.Context, user string, ids []string, all bool) ([]string, int, error) {
	o := &markOp{opBase: newBase(ctx, 1), user: user, ids: ids, all: all}
	if err := s.do(ctx, o); err != nil {
		return nil, 0, err
	}
	if o.notFound {
		return nil, 0, tidings.ErrNotFound
	}
	return o.changed, o.unread, nil
}

// Delete removes one notification of the user, or returns
// tidings.ErrNotFound.
func (s *Store) Delete(ctx context.Context, user, id string) error {
	o := &deleteOp{opBase: newBase(ctx, 1), user: user, id: id}
	if err := s.do(ctx, o); err != nil {
		return err
	}
	if !o.found {
		return tidings.ErrNotFound
	}
	return nil
}

// purgeLoop deletes expired rows every interval, in chunks, through the
// writer, so purging never competes with appends for the write lock.
func (s *Store) purgeLoop(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
		}
		var total int64
		for {
			o := &purgeOp{opBase: newBase(context.Background(), 1), limit: purgeChunk}
			if err := s.do(context.Background(), o); err != nil {
				if !errors.Is(err, ErrClosed) {
					s.log.Warn("sqlitestore: purge expired notifications", "err", err)
				}
				break
			}
			total += o.removed
			if o.removed < purgeChunk || s.closed.Load() {
				break
			}
		}
		if total > 0 {
			s.log.Debug("sqlitestore: purged expired notifications", "count", total)
		}
	}
}

// --- reads ---

// List returns a page of the user's inbox, newest first. The items, the
// unread count and LastSeq come from one read transaction, so they agree.
func (s *Store) List(ctx context.Context, user string, q tidings.ListQuery) (tidings.Page, error) {
	if s.closed.Load() {
		return tidings.Page{}, ErrClosed
	}
	limit := q.Limit
	if limit <= 0 {
		limit = defaultLimit
	}
	limit = min(limit, maxLimit)
	before := q.BeforeSeq
	if before <= 0 {
		before = math.MaxInt64
	}
	now := sql.Named("now", time.Now().UnixMilli())

	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return tidings.Page{}, fmt.Errorf("sqlitestore: list: %w", err)
	}
	defer func() { _ = tx.Rollback() }() // read-only: nothing to keep

	query := `SELECT ` + columns + ` FROM notifications
		WHERE user = :user AND seq < :before AND ` + notExpired
	if q.UnreadOnly {
		query += ` AND read_at IS NULL`
	}
	// One row more than asked tells whether an older page exists.
	query += ` ORDER BY seq DESC LIMIT :limit`
	items, err := queryRows(ctx, tx, query, sql.Named("user", user), sql.Named("before", before),
		now, sql.Named("limit", limit+1))
	if err != nil {
		return tidings.Page{}, fmt.Errorf("sqlitestore: list: %w", err)
	}
	var page tidings.Page
	if len(items) > limit {
		items = items[:limit]
		page.Next = items[limit-1].Seq
	}
	page.Items = items
	err = tx.QueryRowContext(ctx, `SELECT `+lastSeqOf+`, `+unreadCount,
		sql.Named("user", user), now).Scan(&page.LastSeq, &page.Unread)
	if err != nil {
		return tidings.Page{}, fmt.Errorf("sqlitestore: list: last seq and unread: %w", err)
	}
	return page, nil
}

// Since returns up to limit unexpired notifications with Seq > after,
// oldest first. limit <= 0 means 50; a larger limit is honoured as given,
// since the caller resuming a cursor decides how much it can take.
func (s *Store) Since(ctx context.Context, user string, after int64, limit int) ([]tidings.Notification, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if limit <= 0 {
		limit = defaultLimit
	}
	items, err := queryRows(ctx, s.rdb, `SELECT `+columns+` FROM notifications
		WHERE user = :user AND seq > :after AND `+notExpired+`
		ORDER BY seq ASC LIMIT :limit`,
		sql.Named("user", user), sql.Named("after", after),
		sql.Named("now", time.Now().UnixMilli()), sql.Named("limit", limit))
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: since: %w", err)
	}
	return items, nil
}

// Unread counts the user's unread, unexpired notifications.
func (s *Store) Unread(ctx context.Context, user string) (int, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	var n int
	err := s.rdb.QueryRowContext(ctx, `SELECT `+unreadCount,
		sql.Named("user", user), sql.Named("now", time.Now().UnixMilli())).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("sqlitestore: unread: %w", err)
	}
	return n, nil
}

// querier is what both *sql.DB and *sql.Tx offer.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func queryRows(ctx context.Context, q querier, query string, args ...any) ([]tidings.Notification, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	items := []tidings.Notification{}
	for rows.Next() {
		n, err := scanRow(rows)
		if err != nil {
			return nil, err
		}
		items = append(items, n)
	}
	return items, rows.Err()
}

// scanner is what both *sql.Row and *sql.Rows offer.
type scanner interface {
	Scan(dest ...any) error
}

// scanRow reads one row in the order of columns.
func scanRow(r scanner) (tidings.Notification, error) {
	var (
		n               tidings.Notification
		data            []byte
		created         int64
		readAt, expires sql.NullInt64
	)
	if err := r.Scan(&n.ID, &n.Seq, &n.User, &n.Type, &n.Title, &n.Body, &n.URL,
		&data, &n.Group, &created, &readAt, &expires); err != nil {
		return n, err
	}
	if data != nil {
		n.Data = json.RawMessage(data)
	}
	n.CreatedAt = fromMillis(created)
	if readAt.Valid {
		t := fromMillis(readAt.Int64)
		n.ReadAt = &t
	}
	if expires.Valid {
		t := fromMillis(expires.Int64)
		n.ExpiresAt = &t
	}
	return n, nil
}
