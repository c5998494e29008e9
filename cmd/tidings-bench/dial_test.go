//go:build linux

package main

import (
	"net"
	"testing"
	"time"
)

func TestDialSpreadsLoopbackSources(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	seen := map[string]bool{}
	for range loopbackSources {
		c, err := dial(ln.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		local := c.LocalAddr().(*net.TCPAddr)
		if !local.IP.IsLoopback() || local.Port == 0 {
			t.Fatalf("source %v: want a loopback address with a port", local)
		}
		if remote := s.RemoteAddr().(*net.TCPAddr); !remote.IP.Equal(local.IP) {
			t.Fatalf("server sees %v, client bound %v", remote, local)
		}
		seen[local.IP.String()] = true
		c.Close()
		s.Close()
	}
	if len(seen) != loopbackSources {
		t.Fatalf("%d connections came from %d source addresses, want %d", loopbackSources, len(seen), loopbackSources)
	}
}
