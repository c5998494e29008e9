package main

import (
	"bytes"
	"context"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

var pongPrefix = []byte(`{"op":"pong"`)

type personalResult struct {
	Scenario        string    `json:"scenario"`
	Conns           int       `json:"conns"`
	Rate            float64   `json:"rate"`
	DurationS       float64   `json:"duration_s"`
	Workers         int       `json:"workers"`
	ConnectsPerSec  float64   `json:"connects_per_s"`
	Sent            int64     `json:"sent"`
	Acknowledged    int64     `json:"acknowledged"`
	HTTPErrors      int64     `json:"http_errors"`
	Delivered       int64     `json:"delivered"`
	Completeness    float64   `json:"completeness"`
	AchievedPerSec  float64   `json:"achieved_per_s"`
	Latency         latencies `json:"latency"`
	HTTPRTT         latencies `json:"http_rtt"`
	ServerCPUSec    *float64  `json:"server_cpu_s,omitempty"`
	ServerCPUPerNot *float64  `json:"server_cpu_us_per_notification,omitempty"`
	ClientCPUPerNot *float64  `json:"client_cpu_us_per_notification,omitempty"`
	OtherFrames     int64     `json:"other_frames"`
	ServerCloses    int64     `json:"server_closes"`
	BadFrames       int64     `json:"bad_frames"`
	WindowS         float64   `json:"window_s"`
	OtherCPUSec     *float64  `json:"other_cpu_s,omitempty"`
	serverFigures
}

// personalSink records the notifications one read loop sees.
type personalSink struct {
	pongs *atomic.Int64
	got   atomic.Int64
	lat   []int64
	other int64
}

func (s *personalSink) text(c *wsConn, p []byte, now int64) {
	if bytes.HasPrefix(p, pongPrefix) {
		if c.acked.CompareAndSwap(false, true) {
			s.pongs.Add(1)
		}
		return
	}
	t, ok := findInt(p, keyT)
	if !ok {
		s.other++
		return
	}
	s.lat = append(s.lat, now-t)
	s.got.Add(1)
}

func runPersonal(args []string) error {
	fs, cm, n := newFlags("personal", 2000)
	rate := fs.Float64("rate", 2000, "notifications per second")
	duration := fs.Duration("duration", 10*time.Second, "how long to send")
	workers := fs.Int("workers", 64, "HTTP requests in flight at most (kept-alive connections)")
	_ = fs.Parse(args)
	if err := cm.finish(*n, true); err != nil {
		return err
	}
	if *rate <= 0 || *duration <= 0 || *workers <= 0 {
		return usageError("--rate, --duration and --workers must be positive")
	}
	watchdog(dialBound(cm, *n) + 3*cm.timeout + *duration + 2*time.Minute)
	res, err := personal(cm, *n, *rate, *duration, *workers)
	if err != nil {
		return err
	}
	emit(res, [][2]string{
		{"connections", fmt.Sprintf("%d users (%.0f connects/s)", res.Conns, res.ConnectsPerSec)},
		{"target", fmt.Sprintf("%g/s for %gs, %d in flight at most", res.Rate, res.DurationS, res.Workers)},
		{"sent", fmt.Sprintf("%d (%d acknowledged 202, %d failed)", res.Sent, res.Acknowledged, res.HTTPErrors)},
		{"achieved", fmt.Sprintf("%.0f notifications/s", res.AchievedPerSec)},
		{"delivered", fmt.Sprintf("%d (%.4f of acknowledged)", res.Delivered, res.Completeness)},
		{"send→delivery", res.Latency.String()},
		{"HTTP answer", res.HTTPRTT.String()},
		{"server CPU", optional(res.ServerCPUPerNot, "%.1f µs per notification")},
		{"client CPU", optional(res.ClientCPUPerNot, "%.1f µs per notification")},
		{"other load", otherLoad(res.OtherCPUSec, res.WindowS)},
		{"server RSS", fmt.Sprintf("%.1f MiB, %d threads", res.RSSMiB, res.Threads)},
		{"anomalies", fmt.Sprintf("%d other frames, %d closed by server, %d bad frames", res.OtherFrames, res.ServerCloses, res.BadFrames)},
	})
	if res.HTTPErrors > 0 || res.Delivered < res.Acknowledged {
		return errFailed
	}
	return nil
}

func personal(cm *common, n int, rate float64, duration time.Duration, workers int) (*personalResult, error) {
	tokens, err := mintTokens(cm.secret, n)
	if err != nil {
		return nil, err
	}
	clk := newClock()
	var pongs atomic.Int64
	var sinks []*personalSink
	rd, err := newReaders(cm.readers, n, clk, func(int) textHandler {
		s := &personalSink{pongs: &pongs, lat: make([]int64, 0, int(rate*duration.Seconds())/cm.readers+1024)}
		sinks = append(sinks, s)
		return s
	})
	if err != nil {
		return nil, err
	}
	readersOpen := true
	stopReaders := func() {
		if readersOpen {
			rd.close()
			readersOpen = false
		}
	}
	defer stopReaders()

	// A ping answered means the server has set the connection up and, but
	// for a narrow window, bound it to its user: notifications reach it.
	ping := []byte(`{"op":"ping"}`)
	d := dialAll(cm, tokens, false, func(c *wsConn) error {
		if err := rd.add(c); err != nil {
			return err
		}
		return c.sendText(ping)
	})
	defer func() { stopReaders(); d.closeAll() }() // readers first: a closed descriptor may be reused
	if d.firstErr != nil {
		return nil, d.firstErr
	}
	allPonged := func() bool { return pongs.Load() == int64(n) }
	waitQuiet(cm.timeout, 2*time.Second, allPonged, pongs.Load)
	if !allPonged() {
		missing := 0
		for _, c := range d.conns {
			if !c.acked.Load() {
				missing++
				_ = c.sendText(ping)
			}
		}
		fmt.Fprintf(os.Stderr, "personal: %d pings unanswered; sent them again\n", missing)
		if !waitFor(cm.timeout, allPonged) {
			return nil, fmt.Errorf("only %d of %d connections answered a ping (%d closed by the server, first: %s)",
				pongs.Load(), n, rd.closes.Load(), rd.firstEndText())
		}
	}

	api := newAPIClient(cm, workers)
	defer api.close()
	srvCPU, cliCPU := newCPUMeter(cm.pid), newCPUMeter(os.Getpid())
	srvCPU.start()
	cliCPU.start()
	mach := newMachineMeter()
	mach.start()

	// The pacer hands out one ticket per notification on schedule; workers
	// send one request per ticket. When every worker is busy the pacer
	// waits, and the achieved rate falls below the target.
	tickets := make(chan struct{}, workers)
	var sent, acked, httpErrs atomic.Int64
	var firstErr atomic.Value
	var lastAck atomic.Int64
	rtts := make([][]int64, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range tickets {
				user := mrand.IntN(n)
				t := clk.now()
				body := fmt.Appendf(nil, `{"users":["bench-%d"],"title":"x","data":{"t":%d}}`, user, t)
				sent.Add(1)
				_, err := api.post(context.Background(), "/v1/notifications", body, 202)
				done := clk.now()
				rtts[w] = append(rtts[w], done-t)
				if err != nil {
					if httpErrs.Add(1) == 1 {
						firstErr.Store(err.Error())
					}
					continue
				}
				acked.Add(1)
				for {
					l := lastAck.Load()
					if done <= l || lastAck.CompareAndSwap(l, done) {
						break
					}
				}
			}
		}()
	}
	start := time.Now()
	firstSend := clk.now()
	// Ticket i is due at i/rate. Sending stops at the end of the duration
	// even when busy workers held the pacer back (sent then falls short);
	// the few tickets that timer slack alone left unsent are sent after.
	end := time.NewTimer(duration)
	defer end.Stop()
	issued := int64(0)
	total := int64(rate * duration.Seconds())
pace:
	for issued < total {
		due := min(int64(rate*time.Since(start).Seconds())+1, total)
		for ; issued < due; issued++ {
			select {
			case tickets <- struct{}{}:
			case <-end.C:
				break pace
			}
		}
		select {
		case <-time.After(time.Millisecond):
		case <-end.C:
			break pace
		}
	}
	if slack := int64(rate/100) + 1; total-issued <= slack { // within 10 ms of the schedule
		for ; issued < total; issued++ {
			tickets <- struct{}{}
		}
	}
	close(tickets)
	wg.Wait()
	if e := httpErrs.Load(); e > 0 {
		fmt.Fprintf(os.Stderr, "personal: %d requests failed, first: %v\n", e, firstErr.Load())
	}
	got := func() int64 {
		var g int64
		for _, s := range sinks {
			g += s.got.Load()
		}
		return g
	}
	waitQuiet(cm.timeout, 5*time.Second, func() bool { return got() >= acked.Load() }, got)
	cpuS, cpuOK := srvCPU.seconds()
	cliS, cliOK := cliCPU.seconds()
	otherS, window := mach.others(cpuS, cpuOK, cliS, cliOK)
	figs := readServerFigures(cm.pid)
	stopReaders()

	res := &personalResult{Scenario: "personal", Conns: n, Rate: rate, DurationS: duration.Seconds(), Workers: workers,
		ConnectsPerSec: round3(d.perSecond()), Sent: sent.Load(), Acknowledged: acked.Load(), HTTPErrors: httpErrs.Load(),
		ServerCloses: rd.closes.Load(), BadFrames: rd.badFrames.Load(), WindowS: window, OtherCPUSec: otherS, serverFigures: figs}
	var all []int64
	for _, s := range sinks {
		all = append(all, s.lat...)
		res.OtherFrames += s.other
	}
	res.Delivered = int64(len(all))
	if res.Acknowledged > 0 {
		res.Completeness = round3(float64(res.Delivered) / float64(res.Acknowledged))
		if res.Delivered < res.Acknowledged && res.Completeness == 1 {
			res.Completeness = 0.999
		}
	}
	if l := lastAck.Load(); l > firstSend {
		res.AchievedPerSec = round3(float64(res.Acknowledged) / (float64(l-firstSend) / 1e9))
	}
	res.Latency = summarise(all)
	var rtt []int64
	for _, r := range rtts {
		rtt = append(rtt, r...)
	}
	res.HTTPRTT = summarise(rtt)
	if cpuOK {
		v := round3(cpuS)
		res.ServerCPUSec = &v
	}
	res.ServerCPUPerNot = perUnit(cpuS, cpuOK, res.Acknowledged)
	res.ClientCPUPerNot = perUnit(cliS, cliOK, res.Acknowledged)
	return res, nil
}
