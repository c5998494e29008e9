package sqlitestore

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// A commit writes each page it changed to the WAL as one frame, and SQLite's
// unix VFS writes a frame with two pwrite(2) calls, its 24-byte header and
// its page. A group commit for a few hundred users is a few hundred frames
// (one leaf of the (user, seq) index per user), so before this shim the
// writer spent close to half of its time in those syscalls, all of it on the
// one goroutine every append waits for.
//
// walVFS is SQLite's own unix VFS with one change: the WAL file of a
// connection opened through it gathers the writes that continue one another
// into a buffer and hands them to the unix VFS as one write. Everything that
// could observe the file sees it whole, because the buffer is written out
// first:
//   - xSync: SQLite syncs the WAL at every commit (synchronous=FULL) and
//     after writing a new WAL header, before the commit is published in the
//     wal-index; other connections read frames only up to what is published,
//     so they never look past what was written;
//   - xRead (a page this connection spilled and needs again, a checkpoint
//     copying frames), xTruncate, xFileSize, xClose;
//   - a write that does not continue the buffer.
//
// A failed write surfaces at the next of those, as the error the unix VFS
// gave; at xSync that fails the COMMIT, as a failed write would have.
//
// One more change: a commit's sync is not done here. SQLite asks for it
// with SQLITE_SYNC_NORMAL, and for the syncs it cannot do without (a
// checkpoint's, a new WAL header's) with SQLITE_SYNC_FULL once the
// connection sets PRAGMA checkpoint_fullfsync. The shim writes the commit
// out, so it is whole in the file and readers may see it, and returns; the
// owner of the connection must sync the WAL before it treats the commit as
// durable (the Store's syncer, syncLoop in writer.go). Only the Store's
// write connection opens the database through this VFS.
// Locking, shared memory and the database file itself are the unix VFS's,
// untouched.

// walVFSName is the name the shim is registered under (the DSN's vfs=).
const walVFSName = "tidings-unix"

// walBufMax caps one buffered write; a commit larger than that is written
// in pieces of about this size. The unix VFS writes at most 128 KiB - 1 per
// pwrite(2) (a larger write is cut to its size modulo 128 KiB).
const walBufMax = 64 << 10

var (
	walVFSOnce sync.Once
	walVFSErr  error

	// walVFS is registered with SQLite, which keeps a pointer to it: a
	// package variable, so it never moves or goes away. unixOpen is the unix
	// VFS's xOpen, unixIO its file methods (read on the first WAL open) and
	// walIO those methods with the buffering ones in their place.
	walVFS    sqlite3.Tsqlite3_vfs
	unixOpen  uintptr
	unixIO    *sqlite3.Tsqlite3_io_methods
	walIO     sqlite3.Tsqlite3_io_methods
	walIOOnce sync.Once

	walFilesMu sync.Mutex
	walFiles   = map[uintptr]*walFile{} // by sqlite3_file pointer

	// walWrites counts the writes the shim handed to the unix VFS,
	// walDeferredSyncs the commit syncs it left to the connection's owner,
	// walSyncs the syncs it did.
	walWrites, walDeferredSyncs, walSyncs atomic.Int64
)

// walFile is the pending, unwritten tail of one open WAL file, and how far
// into the file the current WAL reaches.
type walFile struct {
	off int64  // file offset of buf[0]
	buf []byte // len 0: nothing pending
	// end is the end of the furthest write since the WAL last started over
	// (SQLite then writes a new header at offset 0): the bytes of WAL that
	// a checkpoint has to deal with. Read by the checkpointer.
	end atomic.Int64

	info   os.FileInfo // the file, to find it by (see findWAL); nil if unknown
	closed atomic.Bool
}

// registerWALVFS registers the shim once per process.
func registerWALVFS() error {
	walVFSOnce.Do(func() {
		tls := libc.NewTLS()
		defer tls.Close()
		unix := sqlite3.Xsqlite3_vfs_find(tls, 0) // the default: "unix"
		if unix == 0 {
			walVFSErr = fmt.Errorf("sqlitestore: SQLite has no default VFS")
			return
		}
		walVFS = *(*sqlite3.Tsqlite3_vfs)(cptr(unix))
		name, err := libc.CString(walVFSName) // kept for the process's life
		if err != nil {
			walVFSErr = err
			return
		}
		walVFS.FzName = name
		walVFS.FpNext = 0
		unixOpen = walVFS.FxOpen
		setFn(&walVFS.FxOpen, walOpen)
		if rc := sqlite3.Xsqlite3_vfs_register(tls, uintptr(unsafe.Pointer(&walVFS)), 0); rc != sqlite3.SQLITE_OK {
			walVFSErr = fmt.Errorf("sqlitestore: register VFS: SQLite error %d", rc)
		}
	})
	return walVFSErr
}

// setFn stores a Go function in a method slot the way the transpiled
// SQLite calls it: the slot holds the function value's pointer. Only
// top-level functions go there, whose values are static.
func setFn[F any](slot *uintptr, fn F) {
	*(*F)(unsafe.Pointer(slot)) = fn
}

// cptr turns an address SQLite handed over (memory it owns, outside the
// Go heap) back into a pointer.
func cptr(p uintptr) unsafe.Pointer {
	return *(*unsafe.Pointer)(unsafe.Pointer(&p))
}

// fn reads a method slot back as a callable Go function.
func fn[F any](slot uintptr) F {
	return *(*F)(unsafe.Pointer(&slot))
}

type (
	openFn     = func(*libc.TLS, uintptr, uintptr, uintptr, int32, uintptr) int32
	closeFn    = func(*libc.TLS, uintptr) int32
	rwFn       = func(*libc.TLS, uintptr, uintptr, int32, int64) int32
	truncateFn = func(*libc.TLS, uintptr, int64) int32
	syncFn     = func(*libc.TLS, uintptr, int32) int32
	sizeFn     = func(*libc.TLS, uintptr, uintptr) int32
)

func walOpen(tls *libc.TLS, vfs, name, file uintptr, flags int32, outFlags uintptr) int32 {
	rc := fn[openFn](unixOpen)(tls, vfs, name, file, flags, outFlags)
	f := (*sqlite3.Tsqlite3_file)(cptr(file))
	if rc != sqlite3.SQLITE_OK || flags&sqlite3.SQLITE_OPEN_WAL == 0 || f.FpMethods == 0 {
		return rc
	}
	walIOOnce.Do(func() {
		unixIO = (*sqlite3.Tsqlite3_io_methods)(cptr(f.FpMethods))
		walIO = *unixIO
		setFn(&walIO.FxClose, walClose)
		setFn(&walIO.FxRead, walRead)
		setFn(&walIO.FxWrite, walWrite)
		setFn(&walIO.FxTruncate, walTruncate)
		setFn(&walIO.FxSync, walSync)
		setFn(&walIO.FxFileSize, walFileSize)
	})
	if f.FpMethods != uintptr(unsafe.Pointer(unixIO)) {
		return rc // not the unix file methods we wrap (cannot happen): leave it be
	}
	w := &walFile{}
	w.info, _ = os.Stat(libc.GoString(name))
	walFilesMu.Lock()
	walFiles[file] = w
	walFilesMu.Unlock()
	f.FpMethods = uintptr(unsafe.Pointer(&walIO))
	return rc
}

// findWAL returns the open WAL file at path, nil if no connection has it
// open through the shim. Found by the file itself, not by its name: the
// name SQLite opens has its symbolic links resolved.
func findWAL(path string) *walFile {
	info, err := os.Stat(path)
	if err != nil {
		return nil
	}
	walFilesMu.Lock()
	defer walFilesMu.Unlock()
	for _, w := range walFiles {
		if w.info != nil && os.SameFile(w.info, info) && !w.closed.Load() {
			return w
		}
	}
	return nil
}

func walFileOf(file uintptr) *walFile {
	walFilesMu.Lock()
	w := walFiles[file]
	walFilesMu.Unlock()
	return w
}

// flush writes out what is pending.
func (w *walFile) flush(tls *libc.TLS, file uintptr) int32 {
	if len(w.buf) == 0 {
		return sqlite3.SQLITE_OK
	}
	rc := unixWrite(tls, file, uintptr(unsafe.Pointer(&w.buf[0])), int32(len(w.buf)), w.off)
	w.buf = w.buf[:0]
	return rc
}

func unixWrite(tls *libc.TLS, file, data uintptr, n int32, off int64) int32 {
	walWrites.Add(1)
	return fn[rwFn](unixIO.FxWrite)(tls, file, data, n, off)
}

func walWrite(tls *libc.TLS, file, data uintptr, n int32, off int64) int32 {
	w := walFileOf(file)
	if end := off + int64(n); off == 0 || end > w.end.Load() {
		w.end.Store(end) // only this connection writes: no lost update
	}
	if len(w.buf) > 0 && off == w.off+int64(len(w.buf)) && len(w.buf)+int(n) <= walBufMax {
		w.buf = append(w.buf, unsafe.Slice((*byte)(cptr(data)), n)...)
		return sqlite3.SQLITE_OK
	}
	if rc := w.flush(tls, file); rc != sqlite3.SQLITE_OK {
		return rc
	}
	if int(n) > walBufMax/2 {
		return unixWrite(tls, file, data, n, off)
	}
	if w.buf == nil {
		w.buf = make([]byte, 0, walBufMax)
	}
	w.off = off
	w.buf = append(w.buf, unsafe.Slice((*byte)(cptr(data)), n)...)
	return sqlite3.SQLITE_OK
}

func walRead(tls *libc.TLS, file, data uintptr, n int32, off int64) int32 {
	if rc := walFileOf(file).flush(tls, file); rc != sqlite3.SQLITE_OK {
		return rc
	}
	return fn[rwFn](unixIO.FxRead)(tls, file, data, n, off)
}

// walSync writes out what is pending and syncs the file, except for a
// commit's sync (see the file comment).
func walSync(tls *libc.TLS, file uintptr, flags int32) int32 {
	if rc := walFileOf(file).flush(tls, file); rc != sqlite3.SQLITE_OK {
		return rc
	}
	if flags&0x0f != sqlite3.SQLITE_SYNC_FULL {
		walDeferredSyncs.Add(1)
		return sqlite3.SQLITE_OK
	}
	walSyncs.Add(1)
	return fn[syncFn](unixIO.FxSync)(tls, file, flags)
}

func walTruncate(tls *libc.TLS, file uintptr, size int64) int32 {
	if rc := walFileOf(file).flush(tls, file); rc != sqlite3.SQLITE_OK {
		return rc
	}
	return fn[truncateFn](unixIO.FxTruncate)(tls, file, size)
}

func walFileSize(tls *libc.TLS, file, size uintptr) int32 {
	if rc := walFileOf(file).flush(tls, file); rc != sqlite3.SQLITE_OK {
		return rc
	}
	return fn[sizeFn](unixIO.FxFileSize)(tls, file, size)
}

func walClose(tls *libc.TLS, file uintptr) int32 {
	rc := walFileOf(file).flush(tls, file)
	walFilesMu.Lock()
	if w := walFiles[file]; w != nil {
		w.closed.Store(true)
	}
	delete(walFiles, file)
	walFilesMu.Unlock()
	if crc := fn[closeFn](unixIO.FxClose)(tls, file); rc == sqlite3.SQLITE_OK {
		rc = crc
	}
	return rc
}
