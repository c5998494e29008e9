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
	`
-- Highest seq ever handed to each user. Kept apart from notifications so a
-- seq is never reused after the newest row is deleted or purged, and so
-- Page.LastSeq is one primary-key lookup.
CREATE TABLE user_seq (
	user     TEXT PRIMARY KEY,
	last_seq INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- One row per stored notification. Times are unix milliseconds (UTC).
-- pk is the internal rowid; rows are big (body, data) so a rowid table
-- with secondary indexes suits them better than WITHOUT ROWID.
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
-- Unread counts: only unread rows are in it, and it holds every column
-- the count reads (read_at too, always NULL here, so SQLite sees it as
-- covering), so counting never touches the table.
CREATE INDEX notifications_unread ON notifications (user, expires_at, read_at)
	WHERE read_at IS NULL;
-- The purge loop finds expired rows without a full scan.
CREATE INDEX notifications_expires ON notifications (expires_at)
	WHERE expires_at IS NOT NULL;
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
