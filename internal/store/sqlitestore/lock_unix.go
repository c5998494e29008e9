//go:build unix

package sqlitestore

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockStore takes the lock file beside the database at path (path.lock),
// exclusively, for as long as the returned file stays open. One Store at a
// time may write a database: the writer remembers each user's last
// sequence number between commits (see nextSeq), which a second writer
// would make stale. The lock is released when the file is closed, or when
// the process ends, however it ends.
func lockStore(path string) (*os.File, error) {
	name := path + ".lock"
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("sqlitestore: %s is in use by another Tidings process (it holds %s); "+
				"each server needs a data directory of its own", path, name)
		}
		return nil, fmt.Errorf("sqlitestore: lock %s: %w", name, err)
	}
	return f, nil
}
