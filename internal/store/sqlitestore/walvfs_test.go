package sqlitestore

import (
	"bytes"
	"crypto/sha256"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Large transactions go through the WAL shim: a commit of hundreds of
// frames is written in a few pieces, and one far larger than the page
// cache (spilled, read back, rewritten in place) reaches the file whole and
// in order. Another connection (plain unix VFS) sees exactly the
// committed rows, and so does a fresh open after close.
func TestWALVFSLargeTransaction(t *testing.T) {
	if err := registerWALVFS(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "shim.db")
	w, err := sql.Open("sqlite", dsn(path, "vfs="+walVFSName, "_synchronous=FULL", "_pragma=cache_size(-65536)"))
	if err != nil {
		t.Fatal(err)
	}
	w.SetMaxOpenConns(1)
	mustExec := func(db *sql.DB, q string, args ...any) {
		t.Helper()
		if _, err := db.Exec(q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	mustExec(w, "PRAGMA page_size = 2048")
	mustExec(w, "PRAGMA journal_mode = WAL")
	mustExec(w, "PRAGMA wal_autocheckpoint = 0") // keep every frame in the WAL
	mustExec(w, "CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB NOT NULL)")

	const rows = 4000
	want := make(map[int64][]byte, rows)
	val := func(k int64, round int) []byte {
		h := sha256.Sum256([]byte(fmt.Sprintf("%d/%d", k, round)))
		return bytes.Repeat(h[:], 24) // 768 bytes
	}
	insert := func(tx *sql.Tx, from, to int64) {
		t.Helper()
		for k := from; k < to; k++ {
			want[k] = val(k, 0)
			if _, err := tx.Exec("INSERT INTO t (k, v) VALUES (?, ?)", k, want[k]); err != nil {
				t.Fatal(err)
			}
		}
	}

	// One commit within the page cache: its frames are written in 64 KiB
	// pieces (without the shim: two pwrite calls per frame).
	before := walWrites.Load()
	tx, err := w.Begin()
	if err != nil {
		t.Fatal(err)
	}
	insert(tx, 0, rows/2)
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	writes := walWrites.Load() - before
	st, err := os.Stat(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	frames := (st.Size() - 32) / (2048 + 24)
	if frames < 700 {
		t.Fatalf("WAL holds %d frames; the test meant to write many more", frames)
	}
	if writes <= 0 || writes > frames/20 {
		t.Fatalf("%d frames took %d writes; want them gathered", frames, writes)
	}

	// One commit far larger than a small page cache: SQLite spills pages
	// to the WAL mid-transaction, reads them back, and rewrites frames of
	// this transaction in place.
	mustExec(w, "PRAGMA cache_size = -256")
	tx, err = w.Begin()
	if err != nil {
		t.Fatal(err)
	}
	insert(tx, rows/2, rows)
	for k := int64(0); k < rows; k += 3 {
		want[k] = val(k, 1)
		if _, err := tx.Exec("UPDATE t SET v = ? WHERE k = ?", want[k], k); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	check := func(db *sql.DB, who string) {
		t.Helper()
		var ok string
		if err := db.QueryRow("PRAGMA integrity_check").Scan(&ok); err != nil || ok != "ok" {
			t.Fatalf("%s: integrity_check = %q, %v", who, ok, err)
		}
		r, err := db.Query("SELECT k, v FROM t ORDER BY k")
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		n := 0
		for r.Next() {
			var k int64
			var v []byte
			if err := r.Scan(&k, &v); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(v, want[k]) {
				t.Fatalf("%s: row %d differs", who, k)
			}
			n++
		}
		if err := r.Err(); err != nil || n != rows {
			t.Fatalf("%s: %d rows, %v; want %d", who, n, err, rows)
		}
	}
	plain, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		t.Fatal(err)
	}
	check(plain, "reader beside the writer")
	check(w, "writer")
	if err := plain.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	check(reopenChecked(t, path), "reopened")
}

// reopenChecked opens the database at path on a plain connection, closed
// when the test ends, and checks its integrity.
func reopenChecked(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	var ok string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&ok); err != nil || ok != "ok" {
		t.Fatalf("integrity_check = %q, %v", ok, err)
	}
	return db
}
