package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/tidings/tidings"
)

// The writer is the only code that changes the database. SQLite allows one
// writer at a time anyway; owning the write connection in one goroutine
// turns that limit into an advantage: requests queued while a commit is
// being synced are all taken together and paid for with one fsync (group
// commit), instead of each waiting for the lock and syncing on its own.

// op is one queued write request. apply runs it inside the current
// transaction and keeps its results in the op; it may run twice (once in a
// group, once alone after the group failed), so it must reset its results
// first.
type op interface {
	base() *opBase
	apply(w *writer, now time.Time) error
}

// opBase is what every op carries: the caller's context (to skip work the
// caller has given up on), its weight in the batch limit, and where the
// answer goes. done has room for one answer so the writer never blocks.
type opBase struct {
	ctx  context.Context
	n    int
	done chan error
}

func newBase(ctx context.Context, n int) opBase {
	return opBase{ctx: ctx, n: n, done: make(chan error, 1)}
}

func (b *opBase) base() *opBase { return b }

// writer owns the write connection and its prepared statements.
type writer struct {
	conn     *sql.Conn
	reqs     chan op
	maxBatch int
	log      *slog.Logger
	observer atomic.Pointer[func([]tidings.Notification)]

	// acks carries committed (or failed) transactions to syncLoop, which
	// alone uses walPath, wal and syncErr.
	acks    chan ack
	walPath string
	wal     *os.File
	syncErr error
	sync    func() error // syncWAL; tests put a hook here

	// walLimit is the WAL size past which checkWAL wakes the checkpointer
	// (walFull); tail carries its requests for copyTail.
	walLimit   int64
	walFile    atomic.Pointer[walFile] // found by walBytes
	walFull    chan struct{}
	tail       chan chan error
	tailCopies atomic.Int64

	// seqs remembers users' last_seq as committed, so an append needs no
	// statement to learn it; txSeqs holds what the open transaction has
	// read or assigned. See nextSeq.
	seqs, txSeqs map[string]int64

	// Statements prepared once on conn; every write goes through them.
	begin, commit, rollback *sql.Stmt

	findIdem   *sql.Stmt
	lastSeqs   *sql.Stmt
	insert     *rawStmt // database/sql's conversion skipped: see rawStmt
	markIDs    *sql.Stmt
	markAll    *sql.Stmt
	countOwned *sql.Stmt
	unread     *sql.Stmt
	deleteOne  *sql.Stmt
	purge      *sql.Stmt
}

// Column list shared by every query that returns notifications; scanRow
// reads them in this order.
const columns = `id, seq, user, type, title, body, url, data, grp, created_at, read_at, expires_at`

// notExpired is the filter that hides expired rows; ?now is unix millis.
const notExpired = `(expires_at IS NULL OR expires_at > :now)`

// lastSeqFor is the last seq handed to the user the SQL expression user
// names (0: none; see schema version 2).
func lastSeqFor(user string) string {
	return `max(coalesce((SELECT last_seq FROM user_seq WHERE user = ` + user + `), 0),
		coalesce((SELECT max(seq) FROM notifications WHERE user = ` + user + `), 0))`
}

// lastSeqOf is the last seq of :user, lastSeqsQuery that of each of a JSON
// array of users, and unreadCount the unread count of :user at :now: the
// rows ever stored, less the ones read, deleted or purged while unread,
// less the unread ones already expired but not yet purged, found through
// the narrow index of unread rows that expire.
var (
	lastSeqOf     = lastSeqFor(":user")
	lastSeqsQuery = `SELECT value, ` + lastSeqFor("value") + ` FROM json_each(?)`
	unreadCount   = lastSeqOf + ` - coalesce((SELECT consumed FROM user_seq WHERE user = :user), 0)
		- (SELECT count(*) FROM notifications
		   WHERE user = :user AND expires_at IS NOT NULL AND expires_at <= :now AND read_at IS NULL)`
)

// insertQuery stores one notification. seq is last_seq + 1 (see nextSeq):
// a rolled-back append gives its seq back, a committed one is the user's
// highest until a later one.
const insertQuery = `INSERT INTO notifications
	(user, seq, id, type, title, body, url, data, grp, idem_key, created_at, expires_at)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

var writeStmts = []struct {
	dst   func(w *writer) **sql.Stmt
	query string
}{
	{func(w *writer) **sql.Stmt { return &w.begin }, `BEGIN IMMEDIATE`},
	{func(w *writer) **sql.Stmt { return &w.commit }, `COMMIT`},
	{func(w *writer) **sql.Stmt { return &w.rollback }, `ROLLBACK`},
	{func(w *writer) **sql.Stmt { return &w.findIdem },
		`SELECT ` + columns + ` FROM notifications WHERE user = ? AND idem_key = ?`},
	// The last_seq of each of a JSON array of users (0: none yet).
	{func(w *writer) **sql.Stmt { return &w.lastSeqs }, lastSeqsQuery},
	// ids arrive as one JSON array: one prepared statement for any count,
	// and no bound-variable limit. The unary + keeps the planner on the id
	// index: an index on (user, ...) would scan rows of the user to find a
	// handful of ids.
	{func(w *writer) **sql.Stmt { return &w.markIDs },
		`UPDATE notifications SET read_at = :now
		 WHERE id IN (SELECT value FROM json_each(:ids))
		   AND +user = :user AND read_at IS NULL AND ` + notExpired + `
		 RETURNING id`},
	{func(w *writer) **sql.Stmt { return &w.countOwned },
		`SELECT count(*) FROM notifications
		 WHERE id IN (SELECT value FROM json_each(:ids)) AND +user = :user AND ` + notExpired},
	// No index holds the unread rows, but the caller knows how many there
	// are (:n, from the counter): walking the user's rows newest first, as
	// unread ones mostly are, stops at the last of them instead of reading
	// the whole inbox.
	{func(w *writer) **sql.Stmt { return &w.markAll },
		`UPDATE notifications SET read_at = :now WHERE pk IN
		 (SELECT pk FROM notifications WHERE user = :user AND read_at IS NULL AND ` + notExpired + `
		  ORDER BY seq DESC LIMIT :n)`},
	{func(w *writer) **sql.Stmt { return &w.unread },
		`SELECT ` + unreadCount},
	{func(w *writer) **sql.Stmt { return &w.deleteOne },
		`DELETE FROM notifications WHERE user = :user AND id = :id AND ` + notExpired},
	// Purge in chunks so one purge never holds the write lock for long.
	{func(w *writer) **sql.Stmt { return &w.purge },
		`DELETE FROM notifications WHERE pk IN
		 (SELECT pk FROM notifications WHERE expires_at <= ? LIMIT ?)`},
}

func newWriter(ctx context.Context, conn *sql.Conn, walPath string, maxBatch int, log *slog.Logger) (*writer, error) {
	w := &writer{conn: conn, reqs: make(chan op, 4*maxBatch), maxBatch: maxBatch, log: log,
		acks: make(chan ack, 4*maxBatch), walPath: walPath,
		walLimit: checkpointBytes, walFull: make(chan struct{}, 1), tail: make(chan chan error),
		seqs: make(map[string]int64), txSeqs: make(map[string]int64)}
	w.sync = w.syncWAL
	for _, s := range writeStmts {
		st, err := conn.PrepareContext(ctx, s.query)
		if err != nil {
			w.closeStmts()
			return nil, fmt.Errorf("prepare %q: %w", s.query, err)
		}
		*s.dst(w) = st
	}
	var err error
	if w.insert, err = prepareRaw(ctx, conn, insertQuery); err != nil {
		w.closeStmts()
		return nil, err
	}
	return w, nil
}

func (w *writer) closeStmts() {
	for _, s := range writeStmts {
		if st := *s.dst(w); st != nil {
			_ = st.Close()
			*s.dst(w) = nil
		}
	}
	if w.insert != nil {
		_ = w.insert.close()
		w.insert = nil
	}
}

// run is the writer goroutine: it ends when reqs is closed and drained.
func (w *writer) run() {
	var held op // taken from the queue but left for the next batch
	for {
		select {
		case done := <-w.tail: // a checkpoint round waits for its tail
			done <- w.copyTail()
		default:
		}
		first := held
		held = nil
		if first == nil {
			select {
			case o, ok := <-w.reqs:
				if !ok {
					return
				}
				first = o
			case done := <-w.tail:
				done <- w.copyTail()
				continue
			}
		}
		batch := []op{first}
		n := first.base().n
		closed := false
	drain:
		// Take only what is already queued: waiting for more would add
		// latency to a lone caller for no gain.
		for n < w.maxBatch {
			select {
			case o, ok := <-w.reqs:
				if !ok {
					closed = true
					break drain
				}
				if n+o.base().n > w.maxBatch {
					held = o
					break drain
				}
				batch = append(batch, o)
				n += o.base().n
			default:
				break drain
			}
		}
		w.runBatch(batch)
		w.checkWAL()
		if closed && held == nil {
			return
		}
	}
}

// runBatch runs ops in one transaction and answers each. If the group
// fails, nothing of it was committed, and each op is retried alone so one
// bad request (a duplicate id, say) does not fail its neighbours.
func (w *writer) runBatch(batch []op) {
	live := make([]op, 0, len(batch))
	for _, o := range batch {
		// A caller that gave up before we started gets its own error back
		// and its work is not done at all.
		if err := o.base().ctx.Err(); err != nil {
			o.base().done <- err
			continue
		}
		live = append(live, o)
	}
	if len(live) == 0 {
		return
	}
	err := w.inTx(live)
	if err == nil || len(live) == 1 {
		w.answer(live, err)
		return
	}
	w.log.Warn("sqlitestore: group commit failed; retrying its requests one by one",
		"requests", len(live), "err", err)
	for _, o := range live {
		w.answer([]op{o}, w.inTx([]op{o}))
	}
}

// answer hands ops and the outcome of their transaction to the syncer,
// which answers them once what they committed is durable.
func (w *writer) answer(ops []op, err error) {
	w.acks <- ack{ops: ops, err: err}
}

// ack is one transaction's requests and its outcome (nil: committed).
type ack struct {
	ops []op
	err error
}

// The writer's COMMIT writes the transaction to the WAL and publishes it
// to readers, but does not sync it: walVFS (walvfs.go) leaves a commit's
// sync to the syncer. The syncer takes every transaction committed so far,
// syncs the WAL once for all of them, then reports their notifications to
// the observer and answers their callers, in commit order. Meanwhile the
// writer is already running the next transaction: the disk's sync and the
// next batch's work overlap instead of taking turns. A caller is still
// answered only after its work is on disk, and so is any caller whose
// request saw the result of an earlier one (an idempotent retry, a
// MarkRead): the sync that answers it started after its own commit, and
// covers every earlier one. What readers may see early is a committed
// transaction up to one sync before it is durable: lost only with the
// machine (a power cut before the sync), never with the process.
func (w *writer) syncLoop() {
	for first := range w.acks {
		group := []ack{first}
	more:
		for {
			select {
			case a, ok := <-w.acks:
				if !ok {
					break more
				}
				group = append(group, a)
			default:
				break more
			}
		}
		err := w.syncErr
		if err == nil {
			for _, a := range group {
				if a.err == nil {
					err = w.sync()
					break
				}
			}
		}
		if err != nil && w.syncErr == nil {
			// After a failed fsync the kernel may have dropped the pages
			// it could not write: nothing later can be promised durable.
			w.syncErr = err
			w.log.Error("sqlitestore: syncing the WAL failed; no write is acknowledged from now on", "err", err)
		}
		for _, a := range group {
			if a.err == nil && err == nil {
				w.committed(a.ops)
			}
			answerErr := a.err
			if answerErr == nil {
				answerErr = err
			}
			for _, o := range a.ops {
				o.base().done <- answerErr
			}
		}
	}
}

// syncWAL makes everything written to the WAL so far durable: syncData on a
// descriptor of our own (a sync covers the file, whoever wrote to it).
func (w *writer) syncWAL() error {
	if w.wal == nil {
		f, err := os.Open(w.walPath)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // no WAL yet: nothing was committed to one
		}
		if err != nil {
			return fmt.Errorf("sqlitestore: open WAL to sync it: %w", err)
		}
		w.wal = f
	}
	if err := syncData(w.wal); err != nil {
		return fmt.Errorf("sqlitestore: sync WAL: %w", err)
	}
	return nil
}

// committed reports what a commit stored to the observer, in commit order,
// before any caller is answered: each call's new notifications, without its
// idempotent repeats.
func (w *writer) committed(ops []op) {
	fn := w.observer.Load()
	if fn == nil {
		return
	}
	for _, o := range ops {
		a, ok := o.(*appendOp)
		if !ok || len(a.out) == 0 {
			continue
		}
		if a.repeat == nil {
			(*fn)(a.out)
			continue
		}
		fresh := make([]tidings.Notification, 0, len(a.out))
		for i := range a.out {
			if !a.repeat[i] {
				fresh = append(fresh, a.out[i])
			}
		}
		if len(fresh) > 0 {
			(*fn)(fresh)
		}
	}
}

// inTx applies ops in one IMMEDIATE transaction and commits. Statements
// run with a background context: the transaction serves many callers, so no
// single caller's cancellation may cut it short.
func (w *writer) inTx(ops []op) (err error) {
	ctx := context.Background()
	if _, err := w.begin.ExecContext(ctx); err != nil {
		return fmt.Errorf("sqlitestore: begin: %w", err)
	}
	defer func() {
		if err != nil {
			// Also after a failed COMMIT, which can leave the transaction
			// open; an error here only means there is nothing to undo.
			_, _ = w.rollback.ExecContext(ctx)
			// What the transaction read or assigned was rolled back;
			// w.seqs holds only what earlier commits left.
			clear(w.txSeqs)
			return
		}
		w.keepSeqs()
	}()
	now := time.Now()
	for _, o := range ops {
		if err := o.apply(w, now); err != nil {
			return err
		}
	}
	if _, err := w.commit.ExecContext(ctx); err != nil {
		return fmt.Errorf("sqlitestore: commit: %w", err)
	}
	return nil
}

// appendOp stores one Append call.
type appendOp struct {
	opBase
	items []tidings.NewNotification
	out   []tidings.Notification
	// repeat marks the items of out that an idempotency key found stored
	// before; nil when there are none (the usual case).
	repeat []bool
}

func (o *appendOp) apply(w *writer, _ time.Time) error {
	ctx := context.Background()
	if cap(o.out) < len(o.items) {
		o.out = make([]tidings.Notification, 0, len(o.items))
	}
	o.out = o.out[:0]
	o.repeat = nil
	for i := range o.items {
		it := &o.items[i]
		if it.IdempotencyKey != "" {
			// Looked up inside the transaction, so an earlier item of this
			// very batch (or of this group) is found too.
			n, err := scanRow(w.findIdem.QueryRowContext(ctx, it.User, it.IdempotencyKey))
			if err == nil {
				if o.repeat == nil {
					o.repeat = make([]bool, len(o.items))
				}
				o.repeat[len(o.out)] = true
				o.out = append(o.out, n)
				continue
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("sqlitestore: idempotency lookup: %w", err)
			}
		}
		created := toMillis(it.CreatedAt)
		var expires any
		if it.ExpiresAt != nil {
			expires = toMillis(*it.ExpiresAt)
		}
		seq, err := w.nextSeq(ctx, it.User, o.items[i:])
		if err != nil {
			return err
		}
		if err := w.insert.execArgs(it.User, seq, it.ID, it.Type, it.Title, it.Body, it.URL,
			nullText(string(it.Data)), it.Group, nullText(it.IdempotencyKey), created, expires); err != nil {
			return fmt.Errorf("sqlitestore: insert %q: %w", it.ID, err)
		}
		w.txSeqs[it.User] = seq
		n := tidings.Notification{
			ID: it.ID, Seq: seq, User: it.User, Type: it.Type, Title: it.Title, Body: it.Body,
			URL: it.URL, Data: it.Data, Group: it.Group, CreatedAt: fromMillis(created),
		}
		if it.ExpiresAt != nil {
			t := fromMillis(expires.(int64))
			n.ExpiresAt = &t
		}
		o.out = append(o.out, n)
	}
	return nil
}

// maxRememberedSeqs bounds the writer's memory of last_seq: about 100
// bytes a user. Beyond it, users are forgotten at random and looked up
// again when they next get a notification.
const maxRememberedSeqs = 1 << 16

// nextSeq is the seq for the user's next row in the open transaction:
// last_seq + 1. last_seq comes from the transaction's own appends, from
// what earlier commits left (w.seqs), or from the database; on a lookup,
// the users of the rest of the call (rest) are looked up in the same
// statement, so a call for many users costs one lookup, not one each.
//
// The memory is never behind the database: this writer is the only one
// that changes it (the store's lock file keeps other processes out, see
// lockStore), and deleting a user's newest row raises user_seq.last_seq,
// not the memory's value, which already covers it.
func (w *writer) nextSeq(ctx context.Context, user string, rest []tidings.NewNotification) (int64, error) {
	if last, ok := w.txSeqs[user]; ok {
		return last + 1, nil
	}
	if last, ok := w.seqs[user]; ok {
		w.txSeqs[user] = last
		return last + 1, nil
	}
	var users []string
	for i := range rest {
		u := rest[i].User
		if _, ok := w.txSeqs[u]; ok {
			continue
		}
		if last, ok := w.seqs[u]; ok {
			w.txSeqs[u] = last
			continue
		}
		w.txSeqs[u] = 0 // no row: no seq handed out yet, unless found below
		users = append(users, u)
	}
	list, _ := json.Marshal(users) // []string always encodes
	rows, err := w.lastSeqs.QueryContext(ctx, string(list))
	if err != nil {
		return 0, fmt.Errorf("sqlitestore: last seq: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var u string
		var last int64
		if err := rows.Scan(&u, &last); err != nil {
			return 0, fmt.Errorf("sqlitestore: last seq: %w", err)
		}
		w.txSeqs[u] = last
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("sqlitestore: last seq: %w", err)
	}
	return w.txSeqs[user] + 1, nil
}

// keepSeqs remembers, after a commit, the last_seq the transaction read or
// assigned.
func (w *writer) keepSeqs() {
	for u, last := range w.txSeqs {
		w.seqs[u] = last
	}
	clear(w.txSeqs)
	if len(w.seqs) > maxRememberedSeqs {
		for u := range w.seqs { // map order: a random choice
			delete(w.seqs, u)
			if len(w.seqs) <= maxRememberedSeqs*3/4 {
				break
			}
		}
	}
}

// markOp is one MarkRead call.
type markOp struct {
	opBase
	user     string
	ids      []string
	all      bool
	changed  []string
	unread   int
	notFound bool // a list of ids of which none is the user's
}

func (o *markOp) apply(w *writer, now time.Time) error {
	ctx := context.Background()
	o.changed, o.unread, o.notFound = nil, 0, false
	ms := sql.Named("now", now.UnixMilli())
	user := sql.Named("user", o.user)
	if o.all {
		unread, err := w.unreadOf(ctx, ms, user)
		if err != nil {
			return err
		}
		if unread > 0 {
			if _, err := w.markAll.ExecContext(ctx, ms, user, sql.Named("n", unread)); err != nil {
				return fmt.Errorf("sqlitestore: mark all read: %w", err)
			}
		}
	} else if len(o.ids) > 0 {
		ids, _ := json.Marshal(o.ids) // []string always encodes
		rows, err := w.markIDs.QueryContext(ctx, ms, user, sql.Named("ids", string(ids)))
		if err != nil {
			return fmt.Errorf("sqlitestore: mark read: %w", err)
		}
		got := make(map[string]bool)
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return fmt.Errorf("sqlitestore: mark read: %w", err)
			}
			got[id] = true
		}
		if err := rows.Close(); err != nil {
			return fmt.Errorf("sqlitestore: mark read: %w", err)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("sqlitestore: mark read: %w", err)
		}
		// RETURNING has no defined order: answer in the caller's order,
		// each id once.
		o.changed = []string{}
		for _, id := range o.ids {
			if got[id] {
				o.changed = append(o.changed, id)
				delete(got, id)
			}
		}
		if len(o.changed) == 0 {
			// Nothing changed: already read, or not the user's at all?
			var owned int
			if err := w.countOwned.QueryRowContext(ctx, ms, user, sql.Named("ids", string(ids))).Scan(&owned); err != nil {
				return fmt.Errorf("sqlitestore: mark read: %w", err)
			}
			o.notFound = owned == 0
		}
	} else {
		o.changed = []string{}
	}
	var err error
	o.unread, err = w.unreadOf(ctx, ms, user)
	return err
}

// unreadOf counts the user's unread, unexpired rows at now.
func (w *writer) unreadOf(ctx context.Context, now, user sql.NamedArg) (int, error) {
	var n int
	err := w.unread.QueryRowContext(ctx, now, user).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("sqlitestore: count unread: %w", err)
	}
	return n, nil
}

// deleteOp is one Delete call. Not finding the row is an answer, not a
// failure of the transaction, so it is kept in found.
type deleteOp struct {
	opBase
	user, id string
	found    bool
}

func (o *deleteOp) apply(w *writer, now time.Time) error {
	res, err := w.deleteOne.ExecContext(context.Background(),
		sql.Named("now", now.UnixMilli()), sql.Named("user", o.user), sql.Named("id", o.id))
	if err != nil {
		return fmt.Errorf("sqlitestore: delete: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("sqlitestore: delete: %w", err)
	}
	o.found = n > 0
	return nil
}

// purgeOp deletes up to limit expired rows.
type purgeOp struct {
	opBase
	limit   int
	removed int64
}

func (o *purgeOp) apply(w *writer, now time.Time) error {
	res, err := w.purge.ExecContext(context.Background(), now.UnixMilli(), o.limit)
	if err != nil {
		return fmt.Errorf("sqlitestore: purge: %w", err)
	}
	o.removed, err = res.RowsAffected()
	if err != nil {
		return fmt.Errorf("sqlitestore: purge: %w", err)
	}
	return nil
}

// nullText stores "" as NULL: no data, no idempotency key.
func nullText(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func toMillis(t time.Time) int64 { return t.UnixMilli() }

func fromMillis(ms int64) time.Time { return time.UnixMilli(ms).UTC() }
