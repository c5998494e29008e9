// Command tidings-bench measures a running Tidings server from outside,
// over loopback (docs/BENCHMARKS.md).
//
//	tidings-bench idle --url ws://127.0.0.1:8080/v1/ws --pid PID --secret S --n 15000
//
// idle: opens N authenticated WebSocket connections (one user each, token
// minted with the server's HS256 secret), then reports connects/s and the
// server's resident memory per connection, read from /proc/PID/status.
// The client keeps no goroutine and no buffer per connection, so it costs
// little and measures the server, not itself.
package main

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidings/tidings/internal/auth"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] != "idle" {
		fmt.Fprintln(os.Stderr, "usage: tidings-bench idle --url ws://host:port/v1/ws --pid PID --secret S [--n N]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("idle", flag.ExitOnError)
	target := fs.String("url", "ws://127.0.0.1:8080/v1/ws", "WebSocket URL of the server")
	pid := fs.Int("pid", 0, "server process id (for /proc figures)")
	secret := fs.String("secret", "", "the server's HS256 JWT secret")
	n := fs.Int("n", 10000, "connections")
	conc := fs.Int("c", 64, "connections opened at once")
	settle := fs.Duration("settle", 3*time.Second, "wait before reading memory")
	_ = fs.Parse(os.Args[2:])
	if *pid == 0 || *secret == "" {
		fmt.Fprintln(os.Stderr, "idle: --pid and --secret are required")
		os.Exit(2)
	}
	res, err := idle(*target, *pid, []byte(*secret), *n, *conc, *settle)
	if err != nil {
		fmt.Fprintln(os.Stderr, "idle:", err)
		os.Exit(1)
	}
	line, _ := json.Marshal(res)
	fmt.Println(string(line))
	fmt.Printf("\nconnections      %d\nconnects/s       %.0f\nserver RSS       %.1f MiB -> %.1f MiB\nRSS per conn     %.2f KiB\n",
		res.Conns, res.ConnectsPerSec, float64(res.RSSBefore)/(1<<20), float64(res.RSSAfter)/(1<<20), res.KiBPerConn)
}

type idleResult struct {
	Scenario       string  `json:"scenario"`
	Conns          int     `json:"conns"`
	ConnectsPerSec float64 `json:"connects_per_s"`
	RSSBefore      int64   `json:"rss_before"`
	RSSAfter       int64   `json:"rss_after"`
	KiBPerConn     float64 `json:"kib_per_conn"`
	Threads        int     `json:"server_threads"`
}

func idle(target string, pid int, secret []byte, n, conc int, settle time.Duration) (idleResult, error) {
	u, err := url.Parse(target)
	if err != nil {
		return idleResult{}, err
	}
	tokens := make([]string, n)
	for i := range tokens {
		if tokens[i], err = auth.MintHS256(secret, "bench-"+strconv.Itoa(i), time.Hour, nil); err != nil {
			return idleResult{}, err
		}
	}
	before, _, err := procStatus(pid)
	if err != nil {
		return idleResult{}, err
	}
	conns := make([]net.Conn, n)
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				c, err := dialWS(u, tokens[i])
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("connection %d: %w", i, err)
					}
					mu.Unlock()
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	defer func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Close()
			}
		}
	}()
	if firstErr != nil {
		return idleResult{}, firstErr
	}
	time.Sleep(settle)
	after, threads, err := procStatus(pid)
	if err != nil {
		return idleResult{}, err
	}
	return idleResult{Scenario: "idle", Conns: n, ConnectsPerSec: float64(n) / elapsed.Seconds(),
		RSSBefore: before, RSSAfter: after, KiBPerConn: float64(after-before) / 1024 / float64(n), Threads: threads}, nil
}

// dialWS performs the opening handshake and returns the raw connection.
func dialWS(u *url.URL, token string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", u.Host, 10*time.Second)
	if err != nil {
		return nil, err
	}
	var key [16]byte
	_, _ = rand.Read(key[:])
	req := "GET " + u.Path + "?token=" + url.QueryEscape(token) + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " +
		base64.StdEncoding.EncodeToString(key[:]) + "\r\n\r\n"
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(req)); err != nil {
		c.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(c, 512)
	status, err := br.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, err
	}
	if !strings.Contains(status, " 101 ") {
		c.Close()
		return nil, errors.New("handshake refused: " + strings.TrimSpace(status))
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			c.Close()
			return nil, err
		}
		if line == "\r\n" {
			break
		}
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// procStatus reads VmRSS (bytes) and Threads of a process.
func procStatus(pid int) (rss int64, threads int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			rss = kb * 1024
		case "Threads:":
			threads, _ = strconv.Atoi(f[1])
		}
	}
	return rss, threads, nil
}
