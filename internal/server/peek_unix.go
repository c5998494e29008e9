//go:build unix

package server

import "syscall"

// peekSocket reads what the socket fd holds into b without taking it off
// the socket.
func peekSocket(fd uintptr, b []byte) (int, error) {
	for {
		n, _, err := syscall.Recvfrom(int(fd), b, syscall.MSG_PEEK)
		if err != syscall.EINTR {
			return n, err
		}
	}
}
