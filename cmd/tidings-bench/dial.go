//go:build linux

package main

import (
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// loopbackSources spreads the load tool's connections to a loopback
// server over this many source addresses (127.0.0.1 to 127.0.0.N).
const loopbackSources = 16

var nextSource atomic.Uint32

// dial opens a TCP connection to addr. To a loopback server, successive
// connections come from different loopback source addresses, each with
// its port picked at connect time (IP_BIND_ADDRESS_NO_PORT). From one
// address, tens of thousands of connections (and the TIME_WAIT sockets a
// storm leaves) fill most of the ephemeral port range, and the kernel's
// search for a free port grows long: perf put about a tenth of the tool's
// CPU in a storm of 14,000 there. Real clients come from many addresses.
func dial(addr string, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	if host, _, err := net.SplitHostPort(addr); err == nil {
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() && ip.To4() != nil {
			n := nextSource.Add(1) % loopbackSources
			d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+n))}
			d.Control = func(_, _ string, c syscall.RawConn) error {
				var serr error
				if err := c.Control(func(fd uintptr) {
					serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
				}); err != nil {
					return err
				}
				return serr
			}
		}
	}
	return d.Dial("tcp", addr)
}

// ipBindAddressNoPort is Linux's IP_BIND_ADDRESS_NO_PORT.
const ipBindAddressNoPort = 24
