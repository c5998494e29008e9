//go:build linux

package main

import (
	"bytes"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

var pongPrefix = []byte(`{"op":"pong"`)

type personalResult struct {
	Scenario        string    `json:"scenario"`
	Transport       string    `json:"transport"`
	Conns           int       `json:"conns"`
	Rate            float64   `json:"rate"` // notifications per second
	Batch           int       `json:"batch"`
	DurationS       float64   `json:"duration_s"`
	WarmupS         float64   `json:"warmup_s"`
	Workers         int       `json:"workers"`
	ConnectsPerSec  float64   `json:"connects_per_s"`
	Requests        int64     `json:"requests"`
	Sent            int64     `json:"sent"`         // notifications
	Acknowledged    int64     `json:"acknowledged"` // notifications of requests answered 202
	HTTPErrors      int64     `json:"http_errors"`  // requests
	Delivered       int64     `json:"delivered"`
	Completeness    float64   `json:"completeness"`
	AchievedPerSec  float64   `json:"achieved_per_s"`
	Latency         latencies `json:"latency"`
	HTTPRTT         latencies `json:"http_rtt"` // per request
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

// personalSink records the notifications one read loop sees: every one
// counts, the latency only of those sent from cutoff on (the measured
// window, after the warm-up).
type personalSink struct {
	pongs  *atomic.Int64
	cutoff *atomic.Int64 // send time (clock ns) the window starts at
	got    atomic.Int64
	lat    []int64
	other  int64
}

func (s *personalSink) text(c *wsConn, p, _ []byte, now int64) {
	if !c.sse && bytes.HasPrefix(p, pongPrefix) {
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
	if t >= s.cutoff.Load() {
		s.lat = append(s.lat, now-t)
	}
	s.got.Add(1)
}

func runPersonal(args []string) error {
	fs, cm, n := newFlags("personal", 2000)
	rate := fs.Float64("rate", 2000, "notifications per second")
	duration := fs.Duration("duration", 10*time.Second, "how long to send, measured")
	warmup := fs.Duration("warmup", 0, "how long to send at the same rate before the measured window (delivered and checked, not counted)")
	workers := fs.Int("workers", 64, "HTTP requests in flight at most (kept-alive connections)")
	batch := fs.Int("batch", 1, "notifications per request, to as many distinct users (1 to 1000, at most --n)")
	tf := addTransportFlags(fs)
	_ = fs.Parse(args)
	if err := cm.finish(*n, true); err != nil {
		return err
	}
	if err := tf.apply(cm, ""); err != nil {
		return err
	}
	if *rate <= 0 || *duration <= 0 || *workers <= 0 || *warmup < 0 {
		return usageError("--rate, --duration and --workers must be positive, --warmup not negative")
	}
	if *batch < 1 || *batch > 1000 || *batch > *n {
		return usageError("--batch must be between 1 and min(1000, --n)")
	}
	watchdog(dialBound(cm, *n) + 3*cm.timeout + *warmup + *duration + 2*time.Minute)
	res, err := personal(cm, *n, *rate, *warmup, *duration, *workers, *batch)
	if err != nil {
		return err
	}
	emit(res, [][2]string{
		{"connections", fmt.Sprintf("%d users %s (%.0f connects/s)", res.Conns, res.Transport, res.ConnectsPerSec)},
		{"target", fmt.Sprintf("%g notifications/s for %gs after %gs of warm-up, %d per request (%g requests/s), %d in flight at most",
			res.Rate, res.DurationS, res.WarmupS, res.Batch, res.Rate/float64(res.Batch), res.Workers)},
		{"sent", fmt.Sprintf("%d notifications in %d requests (%d acknowledged 202, %d requests failed)", res.Sent, res.Requests, res.Acknowledged, res.HTTPErrors)},
		{"achieved", fmt.Sprintf("%.0f notifications/s", res.AchievedPerSec)},
		{"delivered", fmt.Sprintf("%d (%.4f of acknowledged)", res.Delivered, res.Completeness)},
		{"send→delivery", res.Latency.String()},
		{"HTTP answer", res.HTTPRTT.String() + " per request"},
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

// personal sends for warmup+duration; what was sent during the warm-up is
// delivered and checked, but the latencies, the achieved rate and the CPU
// figures cover the measured window only.
func personal(cm *common, n int, rate float64, warmup, duration time.Duration, workers, batch int) (*personalResult, error) {
	tokens, err := mintTokens(cm.secret, 0, n)
	if err != nil {
		return nil, err
	}
	clk := newClock()
	var pongs, cutoff atomic.Int64 // cutoff is set before the first request
	var sinks []*personalSink
	rd, err := newReaders(cm.readers, n, clk, func(int) textHandler {
		s := &personalSink{pongs: &pongs, cutoff: &cutoff, lat: make([]int64, 0, int(rate*duration.Seconds())/cm.readers+1024)}
		sinks = append(sinks, s)
		return s
	})
	if err != nil {
		return nil, err
	}

	// A ping answered means the server has set the connection up and, but
	// for a narrow window, bound it to its user: notifications reach it. An
	// SSE stream is bound once its ": ok" came.
	ping := []byte(`{"op":"ping"}`)
	d := rd.greetAll(cm, tokens, ping, &pongs)
	defer func() { rd.close(); d.closeAll() }() // readers first: a closed descriptor may be reused
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
	if err := api.warm(workers); err != nil {
		return nil, fmt.Errorf("API connections: %w", err)
	}
	srvCPU, cliCPU := newCPUMeter(cm.pid), newCPUMeter(os.Getpid())
	mach := newMachineMeter()
	metered := make(chan struct{}) // closed once the meters run
	startMeters := func() {
		srvCPU.start()
		cliCPU.start()
		mach.start()
		close(metered)
	}

	// The pacer hands out one ticket per request on schedule (rate/batch
	// per second); workers send one request per ticket, each to batch
	// distinct random users. When every worker is busy the pacer waits,
	// and the achieved rate falls below the target.
	tickets := make(chan struct{}, workers)
	var requests, sent, acked, ackedWin, httpErrs atomic.Int64 // ackedWin: sent in the window
	var firstErr atomic.Value
	var lastAck atomic.Int64
	rtts := make([][]int64, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pick := newUserPicker(n, batch)
			var body []byte
			for range tickets {
				t := clk.now()
				body = appendNotification(body[:0], pick.next(), t)
				requests.Add(1)
				sent.Add(int64(batch))
				_, err := api.post("/v1/notifications", body, 202)
				done := clk.now()
				inWindow := t >= cutoff.Load()
				if inWindow {
					rtts[w] = append(rtts[w], done-t)
				}
				if err != nil {
					if httpErrs.Add(1) == 1 {
						firstErr.Store(err.Error())
					}
					continue
				}
				acked.Add(int64(batch))
				if inWindow {
					ackedWin.Add(int64(batch))
				}
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
	window := clk.now() + int64(warmup)
	cutoff.Store(window)
	if warmup == 0 {
		startMeters()
	} else {
		t := time.AfterFunc(warmup, startMeters)
		defer t.Stop()
	}
	// Ticket i is due at i/rate. Sending stops at the end of the duration
	// even when busy workers held the pacer back (sent then falls short);
	// the few tickets that timer slack alone left unsent are sent after.
	end := time.NewTimer(warmup + duration)
	defer end.Stop()
	issued := int64(0)
	reqRate := rate / float64(batch)
	total := int64(reqRate * (warmup + duration).Seconds())
pace:
	for issued < total {
		due := min(int64(reqRate*time.Since(start).Seconds())+1, total)
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
	if slack := int64(reqRate/100) + 1; total-issued <= slack { // within 10 ms of the schedule
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
	<-metered
	cpuS, cpuOK := srvCPU.seconds()
	cliS, cliOK := cliCPU.seconds()
	otherS, span := mach.others(cpuS, cpuOK, cliS, cliOK)
	figs := readServerFigures(cm.pid)
	rd.close()

	res := &personalResult{Scenario: "personal", Transport: transportName(cm), Conns: n, Rate: rate, Batch: batch,
		DurationS: duration.Seconds(), WarmupS: warmup.Seconds(), Workers: workers,
		ConnectsPerSec: round3(d.perSecond()), Requests: requests.Load(), Sent: sent.Load(), Acknowledged: acked.Load(), HTTPErrors: httpErrs.Load(),
		ServerCloses: rd.closes.Load(), BadFrames: rd.badFrames.Load(), WindowS: span, OtherCPUSec: otherS, serverFigures: figs}
	var all []int64
	for _, s := range sinks {
		all = append(all, s.lat...)
		res.OtherFrames += s.other
		res.Delivered += s.got.Load()
	}
	if res.Acknowledged > 0 {
		res.Completeness = round3(float64(res.Delivered) / float64(res.Acknowledged))
		if res.Delivered < res.Acknowledged && res.Completeness == 1 {
			res.Completeness = 0.999
		}
	}
	inWindow := ackedWin.Load()
	if l := lastAck.Load(); l > window {
		res.AchievedPerSec = round3(float64(inWindow) / (float64(l-window) / 1e9))
	}
	res.Latency = summarise(all)
	var rtt []int64
	for _, r := range rtts {
		rtt = append(rtt, r...)
	}
	res.HTTPRTT = summarise(rtt)
	res.ServerCPUSec = seconds(cpuS, cpuOK)
	res.ServerCPUPerNot = perUnit(cpuS, cpuOK, inWindow)
	res.ClientCPUPerNot = perUnit(cliS, cliOK, inWindow)
	return res, nil
}

// userPicker draws distinct random users for one request: the first k
// places of a permutation of the n users after k steps of a Fisher–Yates
// shuffle (the permutation stays one, so no draw allocates).
type userPicker struct {
	n, k int
	perm []int32 // with k > 1
	one  [1]int32
}

func newUserPicker(n, k int) *userPicker {
	p := &userPicker{n: n, k: k}
	if k > 1 {
		p.perm = make([]int32, n)
		for i := range p.perm {
			p.perm[i] = int32(i)
		}
	}
	return p
}

// next returns k distinct users, valid until the next call.
func (p *userPicker) next() []int32 {
	if p.k == 1 {
		p.one[0] = int32(mrand.IntN(p.n))
		return p.one[:]
	}
	for i := range p.k {
		j := i + mrand.IntN(p.n-i)
		p.perm[i], p.perm[j] = p.perm[j], p.perm[i]
	}
	return p.perm[:p.k]
}

// appendNotification appends a POST /v1/notifications body to b: one
// notification to users, which carries the send time t in its data (each
// user receives it as data.t of the notification).
func appendNotification(b []byte, users []int32, t int64) []byte {
	b = append(b, `{"users":[`...)
	for i, u := range users {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `"bench-`...)
		b = strconv.AppendInt(b, int64(u), 10)
		b = append(b, '"')
	}
	b = append(b, `],"title":"x","data":{"t":`...)
	b = strconv.AppendInt(b, t, 10)
	return append(b, "}}"...)
}
