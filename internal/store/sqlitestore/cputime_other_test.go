//go:build !unix

package sqlitestore

import "time"

// cpuTime is not read here: the benchmarks' CPU figures come out as 0.
func cpuTime() time.Duration { return 0 }
