//go:build linux

package main

// floor: the kernel's price of one delivery on this machine, with no
// server in the way. The tool connects to itself over loopback and writes
// a broadcast delivery's frame to every socket the way a server's fan-out
// at its cheapest would: one write(2) per subscriber per publish, from a
// thread that does nothing else. The server's CPU per delivery in
// broadcast is read against this. Over loopback a write's system time
// also covers the receiving side's TCP processing and the wakeup of the
// reader's epoll, as it does for a server whose clients are on the same
// machine: the same price the server pays in broadcast.

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// rusageThread is RUSAGE_THREAD (Linux): the calling thread's own usage.
const rusageThread = 1

type floorResult struct {
	Scenario         string    `json:"scenario"`
	Conns            int       `json:"conns"`
	Writers          int       `json:"writers"`
	Publishes        int       `json:"publishes"`
	Rate             float64   `json:"rate"`
	FrameBytes       int       `json:"frame_bytes"`
	ConnectsPerSec   float64   `json:"connects_per_s"`
	Expected         int64     `json:"expected"`
	Deliveries       int64     `json:"deliveries"`
	Completeness     float64   `json:"completeness"`
	WriterCPUSeconds float64   `json:"writer_cpu_s"`
	WriterCPUPerDel  float64   `json:"writer_cpu_us_per_write"`
	WriteLoop        latencies `json:"write_loop"` // one writer's wall time for one round's writes
	DeliveriesPerSec float64   `json:"deliveries_per_s"`
	BurstPerSec      float64   `json:"burst_deliveries_per_s"`
	Latency          latencies `json:"latency"`
	Last             latencies `json:"last_delivery"`
	ClientCPUPerDel  *float64  `json:"client_cpu_us_per_delivery,omitempty"` // the process less the writer threads: the reading side
	WouldBlock       int64     `json:"would_block"`
	WriteErrors      int64     `json:"write_errors"`
	Duplicates       int64     `json:"duplicates"`
	OrderChecked     bool      `json:"order_checked"`
	OutOfOrder       *int64    `json:"out_of_channel_order,omitempty"`
	OtherFrames      int64     `json:"other_frames"`
	Closes           int64     `json:"closes"`
	BadFrames        int64     `json:"bad_frames"`
	WindowS          float64   `json:"window_s"`
	OtherCPUSec      *float64  `json:"other_cpu_s,omitempty"`
}

func runFloor(args []string) error {
	fs := flag.NewFlagSet("floor", flag.ExitOnError)
	cm := &common{}
	n := fs.Int("n", 15000, "connections (the tool holds both ends: twice as many descriptors)")
	m := fs.Int("publishes", 20, "rounds; each writes one frame to every connection")
	rate := fs.Float64("rate", 1, "rounds per second")
	writers := fs.Int("writers", 1, "writer threads, each writing to its share of the connections")
	channel := fs.String("channel", "bench:all", "channel named in the frame's envelope (it sets the frame's size only)")
	fs.IntVar(&cm.conc, "c", 64, "connections opened at once")
	fs.DurationVar(&cm.timeout, "timeout", 30*time.Second, "bound on each wait (connect, last deliveries)")
	fs.IntVar(&cm.readers, "readers", runtime.NumCPU(), "epoll loops reading the connections")
	_ = fs.Parse(args)
	switch {
	case *n <= 0 || *m <= 0 || *rate <= 0:
		return usageError("--n, --publishes and --rate must be positive")
	case *writers <= 0 || *writers > *n:
		return usageError("--writers must be between 1 and --n")
	case cm.conc <= 0 || cm.timeout <= 0 || cm.readers <= 0:
		return usageError("--c, --timeout and --readers must be positive")
	}
	if err := checkFileLimit(2 * *n); err != nil {
		return err
	}
	publishing := time.Duration(float64(*m-1) / *rate * float64(time.Second))
	watchdog(dialBound(cm, *n) + 2*cm.timeout + publishing + 2*time.Minute)
	res, err := floor(cm, *n, *m, *rate, *writers, *channel)
	if err != nil {
		return err
	}
	emit(res, [][2]string{
		{"connections", fmt.Sprintf("%d loopback TCP to itself (%.0f connects/s)", res.Conns, res.ConnectsPerSec)},
		{"rounds", fmt.Sprintf("%d at %g/s, one %d-byte WebSocket frame per connection each", res.Publishes, res.Rate, res.FrameBytes)},
		{"writers", fmt.Sprintf("%d thread(s) locked, one write(2) per socket", res.Writers)},
		{"deliveries", fmt.Sprintf("%d of %d (%.4f)", res.Deliveries, res.Expected, res.Completeness)},
		{"writer CPU", fmt.Sprintf("%.3f µs per write (%.3f CPU-s, RUSAGE_THREAD)", res.WriterCPUPerDel, res.WriterCPUSeconds)},
		{"write loop", res.WriteLoop.String() + " (one writer, one round)"},
		{"deliveries/s", fmt.Sprintf("%.0f (first round to last delivery)", res.DeliveriesPerSec)},
		{"burst/s", fmt.Sprintf("%.0f (one round's deliveries / its last delivery, median)", res.BurstPerSec)},
		{"round→delivery", res.Latency.String()},
		{"round→last", res.Last.String()},
		{"client CPU", optional(res.ClientCPUPerDel, "%.3f µs per delivery (readers: the process less the writers)")},
		{"other load", otherLoad(res.OtherCPUSec, res.WindowS)},
		{"order", orderText(res.OrderChecked, res.OutOfOrder, 0)},
		{"anomalies", fmt.Sprintf("%d would block, %d write errors, %d duplicates, %d other frames, %d closed, %d bad frames",
			res.WouldBlock, res.WriteErrors, res.Duplicates, res.OtherFrames, res.Closes, res.BadFrames)},
	})
	if res.Completeness < 1 || res.WriteErrors > 0 || res.Duplicates > 0 {
		return errFailed
	}
	return nil
}

// floorFrame is the WebSocket frame a Tidings server sends for a broadcast
// tick on a channel that keeps history: the envelope with the channel's
// cursor as id, and data carrying the send time t and the round n.
func floorFrame(channel string, n int, t int64) []byte {
	p := make([]byte, 0, 128)
	p = append(p, `{"event":"tick","channel":`...)
	p = strconv.AppendQuote(p, channel)
	p = append(p, `,"id":"`...)
	p = strconv.AppendInt(p, int64(n)+1, 10)
	p = append(p, `","data":{"t":`...)
	p = strconv.AppendInt(p, t, 10)
	p = append(p, `,"n":`...)
	p = strconv.AppendInt(p, int64(n), 10)
	p = append(p, "}}"...)
	return unmaskedText(p)
}

// unmaskedText encodes one final, unmasked text frame (a server's).
func unmaskedText(p []byte) []byte {
	var b []byte
	switch n := len(p); {
	case n < 126:
		b = append(make([]byte, 0, 2+n), 0x81, byte(n))
	case n <= 0xffff:
		b = append(make([]byte, 0, 4+n), 0x81, 126, byte(n>>8), byte(n))
	default:
		b = append(make([]byte, 0, 10+n), 0x81, 127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, p...)
}

// loopbackListener is a listening socket on 127.0.0.1 made with plain
// system calls: the accepted sockets never meet Go's netpoller.
type loopbackListener struct {
	fd   int
	addr string
}

func listenLoopback(backlog int) (*loopbackListener, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		_ = syscall.Close(fd)
		return nil, fmt.Errorf("bind: %w", err)
	}
	if err := syscall.Listen(fd, backlog); err != nil {
		_ = syscall.Close(fd)
		return nil, fmt.Errorf("listen: %w", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		_ = syscall.Close(fd)
		return nil, err
	}
	in4, ok := sa.(*syscall.SockaddrInet4)
	if !ok {
		_ = syscall.Close(fd)
		return nil, errors.New("listen: not an IPv4 address")
	}
	return &loopbackListener{fd: fd, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(in4.Port))}, nil
}

// acceptN accepts n connections (blocking), each non-blocking with
// TCP_NODELAY, as a server's sockets are.
func (l *loopbackListener) acceptN(n int) ([]int, error) {
	fds := make([]int, 0, n)
	for len(fds) < n {
		fd, _, err := syscall.Accept4(l.fd, syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
		if err == syscall.EINTR || err == syscall.ECONNABORTED {
			continue
		}
		if err != nil {
			return fds, fmt.Errorf("accept: %w", err)
		}
		_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
		fds = append(fds, fd)
	}
	return fds, nil
}

// close wakes a blocked acceptN (shutdown does; close alone does not) and
// closes the socket.
func (l *loopbackListener) close() {
	_ = syscall.Shutdown(l.fd, syscall.SHUT_RDWR)
	_ = syscall.Close(l.fd)
}

// floorWriter is one writer thread's share of the sockets and its
// figures.
type floorWriter struct {
	fds    []int
	rounds chan []byte
	cpu    int64   // nanoseconds of the thread's CPU time over its rounds
	loops  []int64 // nanoseconds of wall time per round
	wouldBlock,
	errs int64
}

// threadCPU is the calling thread's user and system time, in nanoseconds.
func threadCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// run writes each round's frame to every socket of the share, on a
// thread of its own.
func (w *floorWriter) run(timeout time.Duration) {
	runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
	for frame := range w.rounds {
		c0 := threadCPU()
		t0 := time.Now()
		for _, fd := range w.fds {
			w.write(fd, frame, timeout)
		}
		w.loops = append(w.loops, int64(time.Since(t0)))
		w.cpu += threadCPU() - c0
	}
}

// write writes all of b to the non-blocking socket fd: one write(2) when
// the socket has room, as it has unless the reader falls far behind.
func (w *floorWriter) write(fd int, b []byte, timeout time.Duration) {
	var deadline time.Time
	for len(b) > 0 {
		k, err := syscall.Write(fd, b)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			w.wouldBlock++
			if deadline.IsZero() {
				deadline = time.Now().Add(timeout)
			} else if time.Now().After(deadline) {
				w.errs++
				return
			}
			time.Sleep(50 * time.Microsecond)
			continue
		case err != nil:
			w.errs++
			return
		}
		b = b[k:]
	}
}

func floor(cm *common, n, m int, rate float64, writers int, channel string) (*floorResult, error) {
	ln, err := listenLoopback(4096)
	if err != nil {
		return nil, err
	}
	var serverFDs []int
	defer func() {
		for _, fd := range serverFDs {
			_ = syscall.Close(fd)
		}
	}()
	type accepted struct {
		fds []int
		err error
	}
	acc := make(chan accepted, 1)
	go func() {
		fds, err := ln.acceptN(n)
		acc <- accepted{fds, err}
	}()
	listening := true
	closeListener := func() {
		if listening {
			ln.close()
			listening = false
		}
	}
	defer closeListener()

	clk := newClock()
	var acks atomic.Int64
	rd, sinks, err := newBcastReaders(cm, n, m, clk, &acks)
	if err != nil {
		return nil, err
	}
	defer rd.close()

	addr := ln.addr
	cm.dial = func(_ *url.URL, _ string, timeout time.Duration) (*wsConn, error) {
		c, err := dial(addr, timeout)
		if err != nil {
			return nil, err
		}
		return &wsConn{Conn: c, fd: -1}, nil
	}
	d := dialAll(cm, make([]string, n), false, rd.add)
	defer func() { rd.close(); d.closeAll() }() // readers first: a closed descriptor may be reused
	if d.firstErr != nil {
		return nil, d.firstErr
	}
	select {
	case a := <-acc:
		serverFDs = a.fds
		if a.err != nil {
			return nil, a.err
		}
	case <-time.After(cm.timeout):
		closeListener()
		serverFDs = (<-acc).fds
		return nil, fmt.Errorf("only %d of %d connections accepted in %v", len(serverFDs), n, cm.timeout)
	}
	closeListener()

	// The writers, each with a contiguous share of the sockets.
	ws := make([]*floorWriter, writers)
	var wg sync.WaitGroup
	for i := range ws {
		ws[i] = &floorWriter{fds: serverFDs[i*n/writers : (i+1)*n/writers], rounds: make(chan []byte, m),
			loops: make([]int64, 0, m)}
		wg.Add(1)
		go func() { defer wg.Done(); ws[i].run(cm.timeout) }()
	}
	writersOpen := true
	stopWriters := func() {
		if writersOpen {
			for _, w := range ws {
				close(w.rounds)
			}
			wg.Wait()
			writersOpen = false
		}
	}
	defer stopWriters()

	cliCPU := newCPUMeter(os.Getpid())
	cliCPU.start()
	mach := newMachineMeter()
	mach.start()
	start := time.Now()
	firstSend := clk.now()
	period := time.Duration(float64(time.Second) / rate)
	frameBytes := 0
	for i := range m {
		if wait := time.Until(start.Add(time.Duration(i) * period)); wait > 0 {
			time.Sleep(wait)
		}
		frame := floorFrame(channel, i, clk.now())
		frameBytes = len(frame)
		for _, w := range ws {
			w.rounds <- frame
		}
	}
	stopWriters()
	expected := int64(n) * int64(m)
	got := func() int64 { return totalGot(sinks) }
	waitQuiet(cm.timeout, 5*time.Second, func() bool { return got() >= expected }, got)
	cliS, cliOK := cliCPU.seconds()
	otherS, window := mach.others(0, true, cliS, cliOK)
	rd.close()

	res := &floorResult{Scenario: "floor", Conns: n, Writers: writers, Publishes: m, Rate: rate, FrameBytes: frameBytes,
		ConnectsPerSec: round3(d.perSecond()), Expected: expected, Closes: rd.closes.Load(), BadFrames: rd.badFrames.Load(),
		WindowS: window, OtherCPUSec: otherS}
	var writerNS int64
	var loops []int64
	for _, w := range ws {
		writerNS += w.cpu
		loops = append(loops, w.loops...)
		res.WouldBlock += w.wouldBlock
		res.WriteErrors += w.errs
	}
	res.WriterCPUSeconds = round3(float64(writerNS) / 1e9)
	res.WriterCPUPerDel = round3(float64(writerNS) / 1e3 / float64(expected))
	res.WriteLoop = summarise(loops)

	tot := mergeBcast(sinks, m)
	res.Duplicates, res.OtherFrames = tot.dups, tot.other
	res.OrderChecked, res.OutOfOrder, _ = tot.order()
	res.Deliveries = int64(len(tot.all))
	res.Completeness = completeness(res.Deliveries, expected)
	if tot.lastRecv > firstSend {
		res.DeliveriesPerSec = round3(float64(res.Deliveries) / (float64(tot.lastRecv-firstSend) / 1e9))
	}
	res.Latency = summarise(tot.all)
	res.Last = summarise(tot.lasts)
	res.BurstPerSec = tot.burst
	res.ClientCPUPerDel = perUnit(max(cliS-float64(writerNS)/1e9, 0), cliOK, res.Deliveries)
	return res, nil
}
