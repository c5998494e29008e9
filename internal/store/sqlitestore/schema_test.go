package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/tidings/tidings"
)

// A database written by schema version 1 (every append counted in
// user_seq) opens under version 2 with the same last seqs and unread
// counts, and appends go on from the right seq.
func TestMigrationFromVersion1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tidings.db")
	db, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.Exec(q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec("PRAGMA journal_mode = WAL")
	exec(migrations[0])
	exec("PRAGMA user_version = 1")
	now := time.Now().UnixMilli()
	insert := func(user string, seq int64, expires any) {
		exec(`INSERT INTO notifications (user, seq, id, type, title, body, url, grp, created_at, expires_at)
			VALUES (?, ?, ?, 't', 'x', '', '', '', ?, ?)`, user, seq, fmt.Sprintf("%s-%d", user, seq), now, expires)
	}
	// ann: 5 rows, 2 read, the newest deleted (unread): last seq 5, unread 2.
	for seq := int64(1); seq <= 5; seq++ {
		insert("ann", seq, nil)
	}
	exec(`UPDATE notifications SET read_at = ? WHERE user = 'ann' AND seq IN (1, 2)`, now)
	exec(`DELETE FROM notifications WHERE user = 'ann' AND seq = 5`)
	// ben: 3 rows, one of them expired and unread: unread 2 now.
	insert("ben", 1, nil)
	insert("ben", 2, now-1000)
	insert("ben", 3, now+3_600_000)
	// cid: one row, read, then deleted: last seq 1, unread 0.
	insert("cid", 1, nil)
	exec(`UPDATE notifications SET read_at = ? WHERE user = 'cid'`, now)
	exec(`DELETE FROM notifications WHERE user = 'cid'`)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s := openTest(t, path, Options{PurgeEvery: -1})
	ctx := context.Background()
	var version int
	if err := s.rdb.QueryRow("PRAGMA user_version").Scan(&version); err != nil || version != len(migrations) {
		t.Fatalf("user_version %d (%v), want %d", version, err, len(migrations))
	}
	for _, c := range []struct {
		user           string
		lastSeq        int64
		unread, listed int
	}{{"ann", 5, 2, 4}, {"ben", 3, 2, 2}, {"cid", 1, 0, 0}, {"dan", 0, 0, 0}} {
		p, err := s.List(ctx, c.user, tidings.ListQuery{})
		if err != nil {
			t.Fatal(err)
		}
		n, err := s.Unread(ctx, c.user)
		if err != nil {
			t.Fatal(err)
		}
		if p.LastSeq != c.lastSeq || p.Unread != c.unread || n != c.unread || len(p.Items) != c.listed {
			t.Errorf("%s after migrating: last seq %d, unread %d/%d, %d listed; want %d, %d, %d",
				c.user, p.LastSeq, p.Unread, n, len(p.Items), c.lastSeq, c.unread, c.listed)
		}
		got, err := s.Append(ctx, []tidings.NewNotification{newNote(c.user, "after")})
		if err != nil {
			t.Fatal(err)
		}
		if got[0].Seq != c.lastSeq+1 {
			t.Errorf("%s's first append after migrating got seq %d, want %d", c.user, got[0].Seq, c.lastSeq+1)
		}
		if n, err := s.Unread(ctx, c.user); err != nil || n != c.unread+1 {
			t.Errorf("%s's unread after one more append: %d (%v), want %d", c.user, n, err, c.unread+1)
		}
	}
}
