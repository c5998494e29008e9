//go:build !unix

package server

// peekSocket cannot peek here: every connection goes to net/http.
func peekSocket(uintptr, []byte) (int, error) { return 0, errNoPeek }
