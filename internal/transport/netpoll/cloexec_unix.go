//go:build unix

package netpoll

import (
	"syscall"

	"github.com/lesismal/nbio"
)

// closeOnExec sets the flag on c's descriptor (on these platforms Hash
// is the descriptor).
func closeOnExec(c *nbio.Conn) { syscall.CloseOnExec(c.Hash()) }
