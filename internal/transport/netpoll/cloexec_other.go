//go:build !unix

package netpoll

import "github.com/lesismal/nbio"

// closeOnExec: elsewhere the poller library keeps the platform's own
// connections, which are not inherited.
func closeOnExec(*nbio.Conn) {}
