//go:build !linux

package sqlitestore

import "os"

// syncData makes what was written to f durable (see syncdata_linux.go).
func syncData(f *os.File) error { return f.Sync() }
