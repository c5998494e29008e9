//go:build !linux

package main

import (
	"fmt"
	"os"
)

// The load tool reads the server's figures from /proc and its
// connections with epoll: it runs on Linux only.
func main() {
	fmt.Fprintln(os.Stderr, "tidings-bench runs on Linux only (it reads /proc and uses epoll)")
	os.Exit(2)
}
