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

// personalSink records the notifications one read loop sees.
type personalSink struct {
	pongs *atomic.Int64
	got   atomic.Int64
	lat   []int64
	other int64
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
	s.lat = append(s.lat, now-t)
	s.got.Add(1)
}

func runPersonal(args []string) error {
	fs, cm, n := newFlags("personal", 2000)
	rate := fs.Float64("rate", 2000, "notifications per second")
	duration := fs.Duration("duration", 10*time.Second, "how long to send")
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
	if *rate <= 0 || *duration <= 0 || *workers <= 0 {
		return usageError("--rate, --duration and --workers must be positive")
	}
	if *batch < 1 || *batch > 1000 || *batch > *n {
		return usageError("--batch must be between 1 and min(1000, --n)")
	}
	watchdog(dialBound(cm, *n) + 3*cm.timeout + *duration + 2*time.Minute)
	res, err := personal(cm, *n, *rate, *duration, *workers, *batch)
	if err != nil {
		return err
	}
	emit(res, [][2]string{
		{"connections", fmt.Sprintf("%d users %s (%.0f connects/s)", res.Conns, res.Transport, res.ConnectsPerSec)},
		{"target", fmt.Sprintf("%g notifications/s for %gs, %d per request (%g requests/s), %d in flight at most",
			res.Rate, res.DurationS, res.Batch, res.Rate/float64(res.Batch), res.Workers)},
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

func personal(cm *common, n int, rate float64, duration time.Duration, workers, batch int) (*personalResult, error) {
	tokens, err := mintTokens(cm.secret, 0, n)
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
	srvCPU.start()
	cliCPU.start()
	mach := newMachineMeter()
	mach.start()

	// The pacer hands out one ticket per request on schedule (rate/batch
	// per second); workers send one request per ticket, each to batch
	// distinct random users. When every worker is busy the pacer waits,
	// and the achieved rate falls below the target.
	tickets := make(chan struct{}, workers)
	var requests, sent, acked, httpErrs atomic.Int64
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
				rtts[w] = append(rtts[w], done-t)
				if err != nil {
					if httpErrs.Add(1) == 1 {
						firstErr.Store(err.Error())
					}
					continue
				}
				acked.Add(int64(batch))
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
	reqRate := rate / float64(batch)
	total := int64(reqRate * duration.Seconds())
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
	cpuS, cpuOK := srvCPU.seconds()
	cliS, cliOK := cliCPU.seconds()
	otherS, window := mach.others(cpuS, cpuOK, cliS, cliOK)
	figs := readServerFigures(cm.pid)
	rd.close()

	res := &personalResult{Scenario: "personal", Transport: transportName(cm), Conns: n, Rate: rate, Batch: batch,
		DurationS: duration.Seconds(), Workers: workers,
		ConnectsPerSec: round3(d.perSecond()), Requests: requests.Load(), Sent: sent.Load(), Acknowledged: acked.Load(), HTTPErrors: httpErrs.Load(),
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
	res.ServerCPUSec = seconds(cpuS, cpuOK)
	res.ServerCPUPerNot = perUnit(cpuS, cpuOK, res.Acknowledged)
	res.ClientCPUPerNot = perUnit(cliS, cliOK, res.Acknowledged)
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
