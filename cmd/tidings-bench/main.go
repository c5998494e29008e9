//go:build linux

// Command tidings-bench measures a running Tidings server from outside,
// over loopback (docs/BENCHMARKS.md). Each scenario prints one JSON line,
// then a table, and exits non-zero when the run failed.
//
//	tidings-bench idle      --pid PID --secret S --n 15000 [--procs P] [--transport sse]
//	tidings-bench broadcast --pid PID --secret S --api-key K --n 15000 --publishes 20 --rate 1 [--transport sse]
//	tidings-bench personal  --pid PID --secret S --api-key K --n 2000 --rate 2000 --duration 10s [--batch 50] [--transport sse]
//	tidings-bench storm     --pid PID --secret S --n 10000 [--transport sse]
//	tidings-bench cluster   --url ws://B/v1/ws --api http://A --secret S --api-key K --n 2000 --publishes 200 --rate 20
//	tidings-bench floor     --n 15000 --publishes 20 --rate 1 [--writers 2]
//	tidings-bench fsync     --dir DATA_DIR --rate 1000 --duration 10s [--grow]
//
// idle: opens N authenticated connections (one user each, token minted
// with the server's HS256 secret), then reports connects/s and the
// server's resident memory per connection, read from /proc/PID/status.
// The client keeps no goroutine and no buffer per connection, so it costs
// little and measures the server, not itself. With --procs P the
// connections are spread over P child processes of the tool (users
// numbered on across them), each under its own open-file limit, so N may
// pass what one process can hold.
//
// broadcast: N connections subscribe to one channel (--channel, default
// bench:all); M events are published to it over HTTP at R per second;
// every delivery's latency is measured from the send time carried in the
// event. Order is checked per connection against the server's sequence of
// the channel (the envelope's "id" on a WebSocket, the "id:" line over
// SSE): a delivery whose sequence is not above the previous one's is "out
// of channel order". Only channels of a namespace that keeps history
// (history_size) carry a sequence; without one the check is not done
// ("order_checked":false). The publication index is not an order:
// publishes are concurrent requests.
//
// personal: N connected users; notifications to random users over HTTP at
// R notifications per second for a duration; latency from send to
// delivery. With --batch K each request carries one notification to K
// distinct random users (rate/K requests per second); counts and CPU are
// per notification.
//
// storm: opens N connections, closes them all, and reconnects them all as
// fast as the dial concurrency allows.
//
// cluster: broadcast twice to N subscribers on the node of --url, first
// publishing on that node, then on the node of --api (required): the
// difference in latency is what the hop between nodes adds.
//
// floor: no server. The tool listens on 127.0.0.1, opens N TCP
// connections to itself read by the same epoll loops as the other
// scenarios, and writes a broadcast delivery's WebSocket frame to every
// accepted socket, one write(2) per socket, from a thread locked to its OS
// thread (--writers W: W such threads, each with a share of the sockets),
// M rounds at R per second. The writers' own CPU time (getrusage
// RUSAGE_THREAD) per write is the kernel's price of one delivery on this
// machine: read broadcast's server CPU per delivery against it.
//
// fsync: no server either. Writes of --bytes to a file in --dir (the
// filesystem of the data directory), each followed by fsync(2), at --rate
// per second for --duration, rewriting the same 16 MiB (--grow: appending,
// as a log growing from empty): what a durable commit waits for on this
// disk, to read personal's latency against.
//
// Transports (--transport): ws, the default, is the WebSocket at --url;
// sse is Server-Sent Events at --sse-path (default /v1/sse) on the same
// host. An SSE stream is subscribed by its GET (broadcast:
// ?channel=<channel>; personal, idle and storm: the user's personal
// channel) once the server's ": ok" has arrived; the readers split its
// events at the blank line and hand each event's data to the scenario as
// a WebSocket text payload. storm's SSE reconnect is a plain GET: nothing
// is published, so there is no Last-Event-ID to send.
//
// Shared flags: --url, --api, --api-key, --secret, --pid (optional except
// for idle: without it the /proc figures are skipped), --c, --timeout.
// Connections are read by a few epoll loops (--readers), not one goroutine
// each.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tidings/tidings/internal/auth"
)

const usage = `usage: tidings-bench <scenario> [flags]

scenarios:
  idle       N idle connections (--procs P: from P processes): connects/s, server RSS
             per connection
  broadcast  one channel, N subscribers, M publishes at R/s: deliveries/s, latency,
             order by the server's sequence (channels that keep history)
  personal   N users, notifications at R/s (--batch K per request) for a duration:
             latency, notifications/s
  storm      N connections closed and reopened at once: reconnects/s
  cluster    broadcast to N subscribers on the node of --url, published there and
             then on the node of --api: the latency the hop between nodes adds
  floor      no server: N loopback sockets of the tool's own, one frame written to
             each per round (M rounds at R/s): the kernel's CPU per delivery
  fsync      no server: small writes to a file in --dir, each synced: what a
             durable commit waits for on this disk

idle, broadcast, personal, storm and cluster take --transport ws|sse (default ws);
sse streams are opened at --sse-path (default /v1/sse) on the host of --url.

Run "tidings-bench <scenario> -h" for a scenario's flags.`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	raiseFileLimit()
	var err error
	switch os.Args[1] {
	case "idle":
		err = runIdle(os.Args[2:])
	case holdScenario:
		err = runHold(os.Args[2:])
	case "broadcast":
		err = runBroadcast(os.Args[2:])
	case "personal":
		err = runPersonal(os.Args[2:])
	case "storm":
		err = runStorm(os.Args[2:])
	case "cluster":
		err = runCluster(os.Args[2:])
	case "floor":
		err = runFloor(os.Args[2:])
	case "fsync":
		err = runFsync(os.Args[2:])
	case "-h", "-help", "--help", "help":
		fmt.Println(usage)
		return
	default:
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintln(os.Stderr, os.Args[1]+":", err)
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, os.Args[1]+":", err)
		os.Exit(1)
	}
}

type usageError string

func (e usageError) Error() string { return string(e) }

// errFailed reports a run that completed but missed its mark; its figures
// are already printed.
var errFailed = errors.New("run failed (see the figures above)")

// raiseFileLimit lifts the soft open-file limit to the hard one: every
// connection is a descriptor.
func raiseFileLimit() {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
}

// checkFileLimit fails early when n connections cannot be open at once.
func checkFileLimit(n int) error {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return nil
	}
	if uint64(n)+64 > rl.Cur {
		return usageError(fmt.Sprintf("%d connections need more descriptors than the open-file limit (%d); lower --n or raise ulimit -n", n, rl.Cur))
	}
	return nil
}

// watchdog ends the process when a run outlives limit, whatever it waits
// on.
func watchdog(limit time.Duration) {
	time.AfterFunc(limit, func() {
		fmt.Fprintf(os.Stderr, "%s: run exceeded %v; giving up\n", os.Args[1], limit.Round(time.Second))
		os.Exit(1)
	})
}

// parseAPI checks an HTTP base URL of the server's API.
func parseAPI(s string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSuffix(s, "/"))
	if err != nil {
		return nil, usageError("--api: " + err.Error())
	}
	if u.Scheme != "http" || u.Host == "" {
		return nil, usageError("--api: only http:// URLs are supported")
	}
	return u, nil
}

// common are the flags every scenario has.
type common struct {
	rawURL  string
	api     string
	apiURL  *url.URL // api, parsed
	apiKey  string
	secret  string
	pid     int
	conc    int
	timeout time.Duration
	readers int

	u *url.URL
	// dial opens one connection; dialWS unless a scenario says otherwise.
	dial func(u *url.URL, token string, timeout time.Duration) (*wsConn, error)
	sse  bool // connections are SSE streams (--transport sse)
}

// transportFlags are --transport and --sse-path.
type transportFlags struct {
	name    string
	ssePath string
}

func addTransportFlags(fs *flag.FlagSet) *transportFlags {
	t := &transportFlags{}
	fs.StringVar(&t.name, "transport", "ws", "ws (WebSocket at --url) or sse (Server-Sent Events at --sse-path on the same host)")
	fs.StringVar(&t.ssePath, "sse-path", "/v1/sse", "SSE path, with --transport sse")
	return t
}

// apply sets how cm dials: over SSE, a GET of the SSE path with query (the
// channels; empty for the user's personal channel) and the token.
func (t *transportFlags) apply(cm *common, query string) error {
	switch t.name {
	case "ws":
	case "sse":
		if !strings.HasPrefix(t.ssePath, "/") {
			return usageError("--sse-path must start with /")
		}
		path := t.ssePath
		cm.sse = true
		cm.dial = func(u *url.URL, token string, timeout time.Duration) (*wsConn, error) {
			return dialSSE(u.Host, path, query, token, "", timeout)
		}
	default:
		return usageError("--transport is ws or sse")
	}
	return nil
}

func newFlags(name string, defaultN int) (*flag.FlagSet, *common, *int) {
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	c := &common{}
	fs.StringVar(&c.rawURL, "url", "ws://127.0.0.1:8080/v1/ws", "WebSocket URL of the server")
	fs.StringVar(&c.api, "api", "", "HTTP base URL of the server's API (default: derived from --url)")
	fs.StringVar(&c.apiKey, "api-key", "", "a publisher API key of the server")
	fs.StringVar(&c.secret, "secret", "", "the server's HS256 JWT secret (user tokens are minted with it)")
	fs.IntVar(&c.pid, "pid", 0, "server process id, for the /proc figures (optional)")
	fs.IntVar(&c.conc, "c", 64, "connections opened at once")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "bound on each wait (dial, handshake, replies, last deliveries)")
	fs.IntVar(&c.readers, "readers", runtime.NumCPU(), "epoll loops reading the connections")
	n := fs.Int("n", defaultN, "connections")
	return fs, c, n
}

// finish checks the shared flags after parsing.
func (c *common) finish(n int, needAPIKey bool) error {
	u, err := url.Parse(c.rawURL)
	if err != nil {
		return usageError("--url: " + err.Error())
	}
	if u.Scheme != "ws" {
		return usageError("--url: only ws:// is supported")
	}
	if u.Host == "" {
		return usageError("--url: no host")
	}
	c.u = u
	if c.api == "" {
		c.api = "http://" + u.Host + strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), "/v1/ws")
	}
	c.api = strings.TrimSuffix(c.api, "/")
	if c.apiURL, err = parseAPI(c.api); err != nil {
		return err
	}
	switch {
	case c.secret == "":
		return usageError("--secret is required")
	case needAPIKey && c.apiKey == "":
		return usageError("--api-key is required")
	case n <= 0:
		return usageError("--n must be positive")
	case c.conc <= 0:
		return usageError("--c must be positive")
	case c.timeout <= 0:
		return usageError("--timeout must be positive")
	case c.readers <= 0:
		return usageError("--readers must be positive")
	}
	return checkFileLimit(n)
}

// mintTokens mints n user tokens, for users bench-<first> onwards.
func mintTokens(secret string, first, n int) ([]string, error) {
	tokens := make([]string, n)
	for i := range tokens {
		t, err := auth.MintHS256([]byte(secret), "bench-"+strconv.Itoa(first+i), 2*time.Hour, nil)
		if err != nil {
			return nil, err
		}
		tokens[i] = t
	}
	return tokens, nil
}

// dialResult is the outcome of opening many connections.
type dialResult struct {
	conns    []*wsConn // nil where a dial failed
	ok       int
	elapsed  time.Duration
	latency  []int64 // nanoseconds per successful connect (dial + handshake)
	errs     int
	firstErr error
	errKinds map[string]int
}

func (d *dialResult) perSecond() float64 {
	if d.elapsed <= 0 {
		return 0
	}
	return float64(d.ok) / d.elapsed.Seconds()
}

// closeAll closes every open connection.
func (d *dialResult) closeAll() {
	for _, c := range d.conns {
		if c != nil {
			_ = c.Close()
		}
	}
}

// dialAll opens one connection per token, conc at a time. then (optional)
// runs on each new connection in its dialing goroutine. With keepGoing,
// failures are counted and dialing goes on; otherwise the first failure
// stops it.
func dialAll(cm *common, tokens []string, keepGoing bool, then func(c *wsConn) error) *dialResult {
	n := len(tokens)
	res := &dialResult{conns: make([]*wsConn, n), errKinds: map[string]int{}}
	lat := make([]int64, n)
	var next atomic.Int64
	var failed atomic.Bool
	var mu sync.Mutex
	var wg sync.WaitGroup
	fail := func(i int, err error) {
		mu.Lock()
		defer mu.Unlock()
		res.errs++
		res.errKinds[errKind(err)]++
		if res.firstErr == nil {
			res.firstErr = fmt.Errorf("connection %d: %w", i, err)
		}
		if !keepGoing {
			failed.Store(true)
		}
	}
	start := time.Now()
	for w := 0; w < min(cm.conc, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !failed.Load() {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				t0 := time.Now()
				dial := cm.dial
				if dial == nil {
					dial = dialWS
				}
				c, err := dial(cm.u, tokens[i], cm.timeout)
				if err != nil {
					fail(i, err)
					continue
				}
				lat[i] = int64(time.Since(t0))
				c.idx = i
				res.conns[i] = c
				if then != nil {
					if err := then(c); err != nil {
						fail(i, err)
					}
				}
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	for i, c := range res.conns {
		if c != nil {
			res.ok++
			res.latency = append(res.latency, lat[i])
		}
	}
	return res
}

// errKind groups dial errors for the report.
func errKind(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no local port"
	case errors.Is(err, syscall.EMFILE):
		return "too many open files"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case strings.HasPrefix(err.Error(), "handshake refused"):
		return err.Error()
	}
	return "other"
}

// waitFor polls cond every 10 ms until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// serverFigures are read from /proc when --pid is given.
type serverFigures struct {
	RSSMiB  float64 `json:"server_rss_mib,omitempty"`
	Threads int     `json:"server_threads,omitempty"`
}

func readServerFigures(pid int) serverFigures {
	if pid == 0 {
		return serverFigures{}
	}
	rss, th, err := procStatus(pid)
	if err != nil {
		return serverFigures{}
	}
	return serverFigures{RSSMiB: round3(float64(rss) / (1 << 20)), Threads: th}
}

// transportName is "ws" or "sse", for the reports.
func transportName(cm *common) string {
	if cm.sse {
		return "sse"
	}
	return "ws"
}
