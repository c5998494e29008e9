package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations is the schema history. Entry i brings a database from
// PRAGMA user_version i to i+1. Entries are never edited once released,
// only appended: a database in the field may be at any earlier version.
var migrations = []string{
	// 1: the initial schema.
	//
	// Shaped by the write path: a group commit of notifications for many
	// users touches, in every B-tree clustered by user, one leaf per user,
	// and each touched page is written to the WAL in full (and copied into
	// the database again at the next checkpoint). So only what must be is
	// clustered by user: the (user, seq) index and user_seq. Unread counts
	// are a counter in user_seq, the row every append updates anyway, not
	// an index of unread rows. Indexes that only rows with an expiry or an
	// idempotency key enter cost nothing for the rows without. Triggers keep
	// user_seq in step with notifications, so an append is one statement.
	// (The page size, 2 KiB, is set before this runs; see pageSize.)
	`
-- One row per user who was ever sent a notification.
--
-- last_seq is the highest seq ever handed to the user. Kept apart from
-- notifications so a seq is never reused after the newest row is deleted or
-- purged, and so Page.LastSeq is one primary-key lookup.
--
-- unread is the number of the user's rows with read_at IS NULL, expired or
-- not. The triggers below keep both exact in the statement that changes
-- notifications, whichever statement that is (append, MarkRead, Delete,
-- the expiry purge). The user's unread count is unread minus the unread
-- rows that have expired but are not purged yet, which
-- notifications_expiring_unread finds.
CREATE TABLE user_seq (
	user     TEXT PRIMARY KEY,
	last_seq INTEGER NOT NULL,
	unread   INTEGER NOT NULL CHECK (unread >= 0)
) STRICT, WITHOUT ROWID;

-- One row per stored notification. Times are unix milliseconds (UTC).
-- pk is the internal rowid; rows are big (body, data) so a rowid table
-- with secondary indexes suits them better than WITHOUT ROWID, and new rows
-- land together at its end, whoever they are for.
CREATE TABLE notifications (
	pk         INTEGER PRIMARY KEY,
	user       TEXT    NOT NULL,
	seq        INTEGER NOT NULL,
	id         TEXT    NOT NULL CHECK (id <> ''),
	type       TEXT    NOT NULL,
	title      TEXT    NOT NULL,
	body       TEXT    NOT NULL,
	url        TEXT    NOT NULL,
	data       TEXT,              -- raw JSON as sent; NULL when none
	grp        TEXT    NOT NULL,
	idem_key   TEXT,              -- NULL when the publisher sent none
	created_at INTEGER NOT NULL,
	read_at    INTEGER,
	expires_at INTEGER
) STRICT;

-- List (newest first), Since (oldest first) and paging: a range scan of
-- (user, seq) in either direction. Unique: it is also the seq guard.
CREATE UNIQUE INDEX notifications_user_seq ON notifications (user, seq);
-- Delete and MarkRead address rows by id; ids are unique across users.
CREATE UNIQUE INDEX notifications_id ON notifications (id);
-- Idempotency: one row per (user, key), only for rows that have a key.
CREATE UNIQUE INDEX notifications_idem ON notifications (user, idem_key)
	WHERE idem_key IS NOT NULL;
-- The unread rows that expire, by user: the unread count takes those of
-- them already expired (until the purge deletes them) off user_seq.unread.
-- Rows without an expiry, the common case, never enter it. It holds every
-- column that count reads (read_at too, always NULL here, so SQLite sees it
-- as covering), so counting never touches the table.
CREATE INDEX notifications_expiring_unread ON notifications (user, expires_at, read_at)
	WHERE expires_at IS NOT NULL AND read_at IS NULL;
-- The purge loop finds expired rows without a full scan.
CREATE INDEX notifications_expires ON notifications (expires_at)
	WHERE expires_at IS NOT NULL;

-- Records the seq of a new row as the user's last_seq and counts the row.
-- The writer picks seq = last_seq + 1 (remembering last_seq between
-- commits); a seq not above last_seq, which would hand out a seq of a
-- deleted row again, fails the insert instead.
CREATE TRIGGER notifications_inserted AFTER INSERT ON notifications BEGIN
	INSERT INTO user_seq (user, last_seq, unread) VALUES (NEW.user, NEW.seq, NEW.read_at IS NULL)
	ON CONFLICT (user) DO UPDATE SET
		last_seq = iif(excluded.last_seq > last_seq, excluded.last_seq,
			RAISE(ABORT, 'seq not above the user''s last_seq')),
		unread = unread + excluded.unread;
END;
-- Marking a row read (or unread again) moves the counter.
CREATE TRIGGER notifications_read AFTER UPDATE OF read_at ON notifications
	WHEN (OLD.read_at IS NULL) <> (NEW.read_at IS NULL) BEGIN
	UPDATE user_seq SET unread = unread + iif(NEW.read_at IS NULL, 1, -1) WHERE user = NEW.user;
END;
-- Deleting an unread row (Delete, the purge) uncounts it. last_seq stays:
-- a seq is never handed out twice.
CREATE TRIGGER notifications_deleted AFTER DELETE ON notifications
	WHEN OLD.read_at IS NULL BEGIN
	UPDATE user_seq SET unread = unread - 1 WHERE user = OLD.user;
END;
`,

	// 2: appends no longer write user_seq.
	//
	// In version 1 every append updated its user's user_seq row (last_seq
	// and the unread counter), through a trigger: one more B-tree leaf per
	// user per group commit, with its frame in the WAL and its copy at the
	// next checkpoint, and an upsert per row; together about a tenth of
	// what a notification cost the server. Now only what changes rarely is
	// kept there. seq is dense per user (the writer hands out last + 1, and
	// a rolled-back append gives its seqs back), so:
	//
	//   last_seq = max(user_seq.last_seq, the user's highest seq still stored)
	//   unread   = last_seq - user_seq.consumed
	//
	// user_seq.last_seq is raised when a row is deleted (so a seq is never
	// handed out twice, even after the newest row goes), and consumed
	// counts the rows that stopped being unread: read (and back when one is
	// marked unread again), or deleted or purged while unread. A user with
	// no user_seq row has deleted nothing and read nothing. Expired but
	// unpurged unread rows are still taken off at read time, as before.
	`
CREATE TABLE user_seq_2 (
	user     TEXT PRIMARY KEY,
	last_seq INTEGER NOT NULL,
	consumed INTEGER NOT NULL CHECK (consumed >= 0)
) STRICT, WITHOUT ROWID;
INSERT INTO user_seq_2 (user, last_seq, consumed) SELECT user, last_seq, last_seq - unread FROM user_seq;
DROP TRIGGER notifications_inserted;
DROP TRIGGER notifications_read;
DROP TRIGGER notifications_deleted;
DROP TABLE user_seq;
ALTER TABLE user_seq_2 RENAME TO user_seq;

-- A seq not above the highest one a deleted row had would hand that seq out
-- again (the unique (user, seq) index catches one still in use): the writer
-- never picks one, but a stale memory of a last_seq would.
CREATE TRIGGER notifications_seq_fresh BEFORE INSERT ON notifications
	WHEN NEW.seq <= (SELECT last_seq FROM user_seq WHERE user = NEW.user) BEGIN
	SELECT RAISE(ABORT, 'seq not above the user''s last_seq');
END;
-- Marking a row read (or unread again) moves consumed.
CREATE TRIGGER notifications_read AFTER UPDATE OF read_at ON notifications
	WHEN (OLD.read_at IS NULL) <> (NEW.read_at IS NULL) BEGIN
	INSERT INTO user_seq (user, last_seq, consumed) VALUES (NEW.user, 0, 1)
	ON CONFLICT (user) DO UPDATE SET consumed = consumed + iif(NEW.read_at IS NULL, -1, 1);
END;
-- Deleting a row (Delete, the purge) keeps its seq from being handed out
-- again, and consumes it if it was unread.
CREATE TRIGGER notifications_deleted AFTER DELETE ON notifications BEGIN
	INSERT INTO user_seq (user, last_seq, consumed) VALUES (OLD.user, OLD.seq, OLD.read_at IS NULL)
	ON CONFLICT (user) DO UPDATE SET last_seq = max(last_seq, OLD.seq),
		consumed = consumed + (OLD.read_at IS NULL);
END;
`,

	// 3: no seq guard on insert. notifications_seq_fresh looked up the
	// user's user_seq row on every insert, against a writer whose memory
	// of last_seq could go stale if another process appended to the same
	// database: 1.5-4 µs of a notification's 9-16 µs of store CPU
	// (BenchmarkAppendSustained). Open now takes the store's lock file, so
	// no other process writes while a Store is open, and the writer's
	// memory cannot go stale. The unique (user, seq) index stays.
	`DROP TRIGGER notifications_seq_fresh;
`,
}

// migrate brings the database on conn to the latest schema. Each step runs
// in its own transaction together with its user_version bump, so a crash
// leaves the database at a known version.
func migrate(ctx context.Context, conn *sql.Conn) error {
	var version int
	if err := conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if version > len(migrations) {
		return fmt.Errorf("database schema version %d is newer than this build knows (%d)", version, len(migrations))
	}
	for v := version; v < len(migrations); v++ {
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migration %d: %w", v+1, err)
		}
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("migration %d: %w", v+1, err)
		}
		// PRAGMA takes no bound parameters; v+1 is our own integer.
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v+1)); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("migration %d: set version: %w", v+1, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migration %d: commit: %w", v+1, err)
		}
	}
	return nil
}
