//go:build !unix

package sqlitestore

import (
	"fmt"
	"os"
)

// lockStore creates the lock file but cannot lock it on this system: run
// one Tidings process per data directory (see lock_unix.go).
func lockStore(path string) (*os.File, error) {
	f, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: lock file: %w", err)
	}
	return f, nil
}
