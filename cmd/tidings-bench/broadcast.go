//go:build linux

package main

import (
	"bytes"
	"flag"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

var (
	keyT      = []byte(`"t":`)
	keyN      = []byte(`"n":`)
	ackPrefix = []byte(`{"result":true`)
	errPrefix = []byte(`{"code":`)
)

type broadcastResult struct {
	Scenario         string    `json:"scenario"`
	Transport        string    `json:"transport"`
	Conns            int       `json:"conns"`
	Channel          string    `json:"channel"`
	Publishes        int       `json:"publishes"`
	Rate             float64   `json:"rate"`
	ConnectsPerSec   float64   `json:"connects_per_s"`
	SubscribeRetries int       `json:"subscribe_retries"`
	SubscribeErrors  int64     `json:"subscribe_error_replies"`
	PublishErrors    int       `json:"publish_errors"`
	Expected         int64     `json:"expected"`
	Deliveries       int64     `json:"deliveries"`
	Completeness     float64   `json:"completeness"`
	DeliveriesPerSec float64   `json:"deliveries_per_s"`
	BurstPerSec      float64   `json:"burst_deliveries_per_s"`
	Latency          latencies `json:"latency"`
	Last             latencies `json:"last_delivery"`
	PublishRTT       latencies `json:"publish_rtt"`
	ServerCPUSeconds *float64  `json:"server_cpu_s,omitempty"`
	ServerCPUPerDel  *float64  `json:"server_cpu_us_per_delivery,omitempty"`
	ClientCPUPerDel  *float64  `json:"client_cpu_us_per_delivery,omitempty"`
	Duplicates       int64     `json:"duplicates"`
	// The order check: by the server's sequence (the envelope's "id" on a
	// WebSocket, the id line over SSE), which only channels that keep
	// history carry; without it the check is not done.
	OrderChecked bool     `json:"order_checked"`
	OutOfOrder   *int64   `json:"out_of_channel_order,omitempty"`
	WithoutSeq   int64    `json:"deliveries_without_seq,omitempty"` // when some deliveries had a sequence and some not
	ErrorReplies int64    `json:"error_replies"`
	OtherFrames  int64    `json:"other_frames"`
	ServerCloses int64    `json:"server_closes"`
	BadFrames    int64    `json:"bad_frames"`
	WindowS      float64  `json:"window_s"`
	OtherCPUSec  *float64 `json:"other_cpu_s,omitempty"`
	serverFigures
}

// bcastSink records the deliveries one read loop sees.
type bcastSink struct {
	m          int
	acks       *atomic.Int64
	got        atomic.Int64
	errs       atomic.Int64
	lat        []int64
	maxLat     []int64 // per publication: its last delivery
	count      []int64 // per publication
	lastRecv   int64
	dups       int64
	outOfOrder int64 // deliveries whose server sequence was not above the previous one's
	withSeq    int64 // deliveries that carried a server sequence
	withoutSeq int64
	other      int64
	mu         sync.Mutex
	firstErr   string
}

// newBcastReaders makes the read loops of n connections that each expect
// m broadcast deliveries, one bcastSink per loop.
func newBcastReaders(cm *common, n, m int, clk *clock, acks *atomic.Int64) (*readers, []*bcastSink, error) {
	var sinks []*bcastSink
	rd, err := newReaders(cm.readers, n, clk, func(int) textHandler {
		s := &bcastSink{m: m, acks: acks, maxLat: make([]int64, m), count: make([]int64, m),
			lat: make([]int64, 0, n*m/cm.readers+1024)}
		sinks = append(sinks, s)
		return s
	})
	return rd, sinks, err
}

// totalGot is how many deliveries the sinks have counted so far.
func totalGot(sinks []*bcastSink) int64 {
	var g int64
	for _, s := range sinks {
		g += s.got.Load()
	}
	return g
}

func (s *bcastSink) text(c *wsConn, p, id []byte, now int64) {
	if !c.sse && bytes.HasPrefix(p, ackPrefix) {
		if c.acked.CompareAndSwap(false, true) {
			s.acks.Add(1)
		}
		return
	}
	t, ok := findInt(p, keyT)
	if !ok {
		if bytes.HasPrefix(p, errPrefix) {
			if s.errs.Add(1) == 1 {
				s.mu.Lock()
				s.firstErr = string(p)
				s.mu.Unlock()
			}
			return
		}
		s.other++
		return
	}
	n64, ok := findInt(p, keyN)
	if !ok || n64 < 0 || n64 >= int64(s.m) {
		s.other++
		return
	}
	n := int(n64)
	// Duplicates are found by the publication index, in a bitmap.
	if c.seen == nil {
		c.seen = make([]uint64, (s.m+63)/64)
	}
	w, bit := n/64, uint64(1)<<(n%64)
	if c.seen[w]&bit != 0 {
		s.dups++
		return
	}
	c.seen[w] |= bit
	// Order is checked against the server's sequence, not the publication
	// index: concurrent publishes have no order until the channel gives
	// them one.
	if seq, ok := eventSeq(c, p, id); ok {
		s.withSeq++
		if orderCheck(c, seq) {
			s.outOfOrder++
		}
	} else {
		s.withoutSeq++
	}
	l := now - t
	s.lat = append(s.lat, l)
	s.maxLat[n] = max(s.maxLat[n], l)
	s.count[n]++
	s.lastRecv = max(s.lastRecv, now)
	s.got.Add(1)
}

// bcastFlags are the flags of a broadcast run (broadcast, cluster).
type bcastFlags struct {
	m        *int
	rate     *float64
	channel  *string
	inflight *int
	tf       *transportFlags
}

func addBcastFlags(fs *flag.FlagSet, m int, rate float64) *bcastFlags {
	return &bcastFlags{
		m:        fs.Int("publishes", m, "events published"),
		rate:     fs.Float64("rate", rate, "publishes per second"),
		channel:  fs.String("channel", "bench:all", "channel every connection subscribes to"),
		inflight: fs.Int("inflight", 16, "publish requests in flight at most"),
		tf:       addTransportFlags(fs),
	}
}

// apply checks the flags once cm.finish has, and returns how long one
// run's publishing lasts.
func (b *bcastFlags) apply(cm *common) (time.Duration, error) {
	if err := b.tf.apply(cm, "channel="+url.QueryEscape(*b.channel)); err != nil {
		return 0, err
	}
	if *b.m <= 0 || *b.rate <= 0 || *b.inflight <= 0 {
		return 0, usageError("--publishes, --rate and --inflight must be positive")
	}
	return time.Duration(float64(*b.m-1) / *b.rate * float64(time.Second)), nil
}

func runBroadcast(args []string) error {
	fs, cm, n := newFlags("broadcast", 15000)
	bf := addBcastFlags(fs, 20, 1)
	_ = fs.Parse(args)
	if err := cm.finish(*n, true); err != nil {
		return err
	}
	publishing, err := bf.apply(cm)
	if err != nil {
		return err
	}
	watchdog(dialBound(cm, *n) + 3*cm.timeout + publishing + 2*time.Minute)
	res, err := broadcast(cm, *n, *bf.m, *bf.rate, *bf.channel, *bf.inflight)
	if err != nil {
		return err
	}
	subscribe := fmt.Sprintf("%d sent again (%d error replies)", res.SubscribeRetries, res.SubscribeErrors)
	if cm.sse {
		subscribe = "by the stream's GET (subscribed once \": ok\" arrived)"
	}
	order := orderText(res.OrderChecked, res.OutOfOrder, res.WithoutSeq)
	emit(res, [][2]string{
		{"connections", fmt.Sprintf("%d %s (%.0f connects/s)", res.Conns, res.Transport, res.ConnectsPerSec)},
		{"subscribe", subscribe},
		{"publishes", fmt.Sprintf("%d at %g/s to %s (%d failed)", res.Publishes, res.Rate, res.Channel, res.PublishErrors)},
		{"deliveries", fmt.Sprintf("%d of %d (%.4f)", res.Deliveries, res.Expected, res.Completeness)},
		{"deliveries/s", fmt.Sprintf("%.0f (first publish to last delivery)", res.DeliveriesPerSec)},
		{"burst/s", fmt.Sprintf("%.0f (one publish's deliveries / its last delivery, median)", res.BurstPerSec)},
		{"publish→delivery", res.Latency.String()},
		{"publish→last", res.Last.String()},
		{"publish answer", res.PublishRTT.String()},
		{"server CPU", optional(res.ServerCPUPerDel, "%.3f µs per delivery")},
		{"client CPU", optional(res.ClientCPUPerDel, "%.3f µs per delivery")},
		{"other load", otherLoad(res.OtherCPUSec, res.WindowS)},
		{"server RSS", fmt.Sprintf("%.1f MiB, %d threads", res.RSSMiB, res.Threads)},
		{"order", order},
		{"anomalies", fmt.Sprintf("%d duplicates, %d error replies, %d other frames, %d closed by server, %d bad frames",
			res.Duplicates, res.ErrorReplies, res.OtherFrames, res.ServerCloses, res.BadFrames)},
	})
	if res.failed() {
		return errFailed
	}
	return nil
}

// failed tells whether a run missed its mark: a delivery missing or twice,
// a publish refused, or an error frame from the server.
func (r *broadcastResult) failed() bool {
	return r.Completeness < 1 || r.PublishErrors > 0 || r.Duplicates > 0 || r.ErrorReplies > 0
}

// dialBound is a generous bound on opening n connections.
func dialBound(cm *common, n int) time.Duration {
	return time.Duration(n)*5*time.Millisecond + cm.timeout
}

func broadcast(cm *common, n, m int, rate float64, channel string, inflight int) (*broadcastResult, error) {
	tokens, err := mintTokens(cm.secret, 0, n)
	if err != nil {
		return nil, err
	}
	clk := newClock()
	var acks atomic.Int64
	rd, sinks, err := newBcastReaders(cm, n, m, clk, &acks)
	if err != nil {
		return nil, err
	}

	// A WebSocket subscribes with a message and counts once its answer
	// came; an SSE stream was subscribed by its GET once ": ok" came.
	sub := []byte(`{"op":"subscribe","channel":` + strconv.Quote(channel) + `}`)
	d := rd.greetAll(cm, tokens, sub, &acks)
	defer func() { rd.close(); d.closeAll() }() // readers first: a closed descriptor may be reused
	if d.firstErr != nil {
		return nil, d.firstErr
	}
	errReplies := func() int64 {
		var e int64
		for _, s := range sinks {
			e += s.errs.Load()
		}
		return e
	}
	// Every subscription answered. Those that were not (no answer, or an
	// error answer) are sent again, up to twice: subscribing twice is a
	// no-op for the server.
	retries := 0
	allAcked := func() bool { return acks.Load() == int64(n) }
	for round := 0; ; round++ {
		waitQuiet(cm.timeout, 2*time.Second, allAcked, func() int64 { return acks.Load() + errReplies() })
		if allAcked() {
			break
		}
		if round == 2 {
			rd.close()
			return nil, fmt.Errorf("only %d of %d subscriptions answered after %d retries (%d error replies, first: %s; %d closed by the server, first: %s)",
				acks.Load(), n, retries, errReplies(), firstErrText(sinks), rd.closes.Load(), rd.firstEndText())
		}
		again := 0
		for _, c := range d.conns {
			if !c.acked.Load() {
				again++
				if err := c.sendText(sub); err != nil {
					return nil, fmt.Errorf("connection %d: resubscribe: %w", c.idx, err)
				}
			}
		}
		retries += again
		fmt.Fprintf(os.Stderr, "broadcast: %d subscriptions not acknowledged (%d error replies so far, first: %s); sent them again\n",
			again, errReplies(), firstErrText(sinks))
	}
	subErrs := errReplies()

	// Publish M events at the rate; each carries its send time.
	api := newAPIClient(cm, inflight)
	defer api.close()
	if err := api.warm(inflight); err != nil {
		return nil, fmt.Errorf("API connections: %w", err)
	}
	srvCPU, cliCPU := newCPUMeter(cm.pid), newCPUMeter(os.Getpid())
	srvCPU.start()
	cliCPU.start()
	mach := newMachineMeter()
	mach.start()
	sem := make(chan struct{}, inflight)
	rtt := make([]int64, m)
	var pubErrs atomic.Int64
	var firstPubErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	firstSend := clk.now()
	period := time.Duration(float64(time.Second) / rate)
	for i := 0; i < m; i++ {
		if wait := time.Until(start.Add(time.Duration(i) * period)); wait > 0 {
			time.Sleep(wait)
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			t := clk.now()
			body := fmt.Appendf(nil, `{"channel":%s,"event":"tick","data":{"t":%d,"n":%d}}`, strconv.Quote(channel), t, i)
			_, err := api.post("/v1/publish", body, 202)
			rtt[i] = clk.now() - t
			if err != nil {
				if pubErrs.Add(1) == 1 {
					firstPubErr.Store(err.Error())
				}
			}
		}()
	}
	wg.Wait()
	if e := pubErrs.Load(); e > 0 {
		fmt.Fprintf(os.Stderr, "broadcast: %d publishes failed, first: %v\n", e, firstPubErr.Load())
	}
	expected := int64(n) * int64(m-int(pubErrs.Load()))
	got := func() int64 { return totalGot(sinks) }
	waitQuiet(cm.timeout, 5*time.Second, func() bool { return got() >= expected }, got)
	cpuS, cpuOK := srvCPU.seconds()
	cliS, cliOK := cliCPU.seconds()
	otherS, window := mach.others(cpuS, cpuOK, cliS, cliOK)
	figs := readServerFigures(cm.pid)
	rd.close()

	// Merge the loops' records.
	res := &broadcastResult{Scenario: "broadcast", Transport: transportName(cm), Conns: n, Channel: channel, Publishes: m, Rate: rate,
		ConnectsPerSec: round3(d.perSecond()), SubscribeRetries: retries, PublishErrors: int(pubErrs.Load()),
		Expected: int64(n) * int64(m), ServerCloses: rd.closes.Load(), BadFrames: rd.badFrames.Load(), WindowS: window, OtherCPUSec: otherS,
		serverFigures: figs}
	tot := mergeBcast(sinks, m)
	res.Duplicates, res.OtherFrames = tot.dups, tot.other
	res.OrderChecked, res.OutOfOrder, res.WithoutSeq = tot.order()
	res.SubscribeErrors = subErrs
	res.ErrorReplies = tot.errs - subErrs
	res.Deliveries = int64(len(tot.all))
	res.Completeness = completeness(res.Deliveries, res.Expected)
	if tot.lastRecv > firstSend {
		res.DeliveriesPerSec = round3(float64(res.Deliveries) / (float64(tot.lastRecv-firstSend) / 1e9))
	}
	res.Latency = summarise(tot.all)
	res.Last = summarise(tot.lasts)
	res.BurstPerSec = tot.burst
	res.PublishRTT = summarise(rtt)
	res.ServerCPUSeconds = seconds(cpuS, cpuOK)
	res.ServerCPUPerDel = perUnit(cpuS, cpuOK, res.Deliveries)
	res.ClientCPUPerDel = perUnit(cliS, cliOK, res.Deliveries)
	return res, nil
}

// bcastTotals is what the sinks of every read loop saw, merged.
type bcastTotals struct {
	all                                                []int64 // every delivery's latency
	lasts                                              []int64 // per publication delivered at all: its last delivery's latency
	burst                                              float64 // median over publications of deliveries / last delivery's latency
	lastRecv                                           int64   // the last delivery's arrival
	dups, outOfOrder, withSeq, withoutSeq, other, errs int64
}

func mergeBcast(sinks []*bcastSink, m int) bcastTotals {
	var t bcastTotals
	maxLat := make([]int64, m)
	count := make([]int64, m)
	for _, s := range sinks {
		t.all = append(t.all, s.lat...)
		for i := range m {
			maxLat[i] = max(maxLat[i], s.maxLat[i])
			count[i] += s.count[i]
		}
		t.lastRecv = max(t.lastRecv, s.lastRecv)
		t.dups += s.dups
		t.outOfOrder += s.outOfOrder
		t.withSeq += s.withSeq
		t.withoutSeq += s.withoutSeq
		t.other += s.other
		t.errs += s.errs.Load()
	}
	var bursts []int64
	for i := range m {
		if count[i] > 0 {
			t.lasts = append(t.lasts, maxLat[i])
			if maxLat[i] > 0 {
				bursts = append(bursts, int64(float64(count[i])/(float64(maxLat[i])/1e9)))
			}
		}
	}
	if len(bursts) > 0 {
		slices.Sort(bursts)
		t.burst = float64(percentile(bursts, 50))
	}
	return t
}

// order is the outcome of the order check: done when every delivery
// carried the server's sequence; the count of deliveries out of channel
// order when any did (nil when none did); the deliveries without one when
// some had one and some not.
func (t *bcastTotals) order() (checked bool, outOfOrder *int64, without int64) {
	if t.withSeq == 0 {
		return false, nil, 0
	}
	v := t.outOfOrder
	return t.withoutSeq == 0, &v, t.withoutSeq
}

// completeness is got/want, three decimals, and below 1 when got < want.
func completeness(got, want int64) float64 {
	if want <= 0 {
		return 0
	}
	c := round3(float64(got) / float64(want))
	if got < want && c == 1 {
		c = 0.999
	}
	return c
}

// orderText is the table's line of the order check.
func orderText(checked bool, outOfOrder *int64, without int64) string {
	if outOfOrder == nil {
		return "not checked: the deliveries carry no server sequence (a channel without history)"
	}
	s := fmt.Sprintf("%d out of channel order (by the server's sequence)", *outOfOrder)
	if !checked {
		s += fmt.Sprintf("; %d deliveries without a sequence", without)
	}
	return s
}

// waitQuiet waits until done holds, or progress has not moved for quiet,
// or timeout passes.
func waitQuiet(timeout, quiet time.Duration, done func() bool, progress func() int64) {
	deadline := time.Now().Add(timeout)
	last, lastMove := progress(), time.Now()
	for !done() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		if p := progress(); p != last {
			last, lastMove = p, time.Now()
		} else if time.Since(lastMove) > quiet {
			return
		}
	}
}

func firstErrText(sinks []*bcastSink) string {
	for _, s := range sinks {
		s.mu.Lock()
		e := s.firstErr
		s.mu.Unlock()
		if e != "" {
			return e
		}
	}
	return "none"
}

func (r *readers) firstEndText() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.firstEnd == "" {
		return "none"
	}
	return r.firstEnd
}
