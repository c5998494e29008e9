//go:build linux

package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidings/tidings/internal/hub"
)

func TestFrameMaskRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 3, 125, 126, 127, 4000, 65535, 65536, 70000} {
		payload := make([]byte, n)
		for i := range payload {
			payload[i] = byte(i*7 + 3)
		}
		key := [4]byte{0x12, 0x34, 0x56, 0x78}
		f := maskedFrame(hub.OpcodeText, payload, key)
		if f[0] != 0x81 {
			t.Fatalf("n=%d: first byte %#x, want FIN|text", n, f[0])
		}
		if f[1]&0x80 == 0 {
			t.Fatalf("n=%d: mask bit not set", n)
		}
		// The wire bytes are masked: not the payload itself.
		if n > 4 && bytes.Contains(f, payload) {
			t.Fatalf("n=%d: payload appears unmasked", n)
		}
		var got [][]byte
		used, err := parseFrames(f, func(op byte, fin bool, p []byte) {
			if op != hub.OpcodeText || !fin {
				t.Fatalf("n=%d: op %d fin %v", n, op, fin)
			}
			got = append(got, append([]byte(nil), p...))
		})
		if err != nil || used != len(f) || len(got) != 1 || !bytes.Equal(got[0], payload) {
			t.Fatalf("n=%d: used %d of %d, err %v, frames %d, equal %v", n, used, len(f), err, len(got),
				len(got) == 1 && bytes.Equal(got[0], payload))
		}
	}
}

func TestMaskIsItsOwnInverse(t *testing.T) {
	key := [4]byte{1, 2, 3, 4}
	p := []byte("hello, tidings")
	q := append([]byte(nil), p...)
	mask(q, key)
	if bytes.Equal(p, q) {
		t.Fatal("masking changed nothing")
	}
	mask(q, key)
	if !bytes.Equal(p, q) {
		t.Fatalf("got %q", q)
	}
}

// serverFrame is an unmasked frame, as the server sends.
func serverFrame(op byte, p []byte) []byte {
	b := []byte{0x80 | op}
	switch n := len(p); {
	case n < 126:
		b = append(b, byte(n))
	case n <= 0xffff:
		b = append(b, 126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, p...)
}

func TestParseFramesSplit(t *testing.T) {
	var stream []byte
	want := []string{`{"result":true}`, "", string(bytes.Repeat([]byte("x"), 300)), `{"event":"tick"}`}
	for _, w := range want {
		stream = append(stream, serverFrame(hub.OpcodeText, []byte(w))...)
	}
	stream = append(stream, serverFrame(hub.OpcodePing, nil)...)
	// Feed the stream cut at every point: frames come out whole, once.
	for cut := 0; cut <= len(stream); cut++ {
		var got []string
		pings := 0
		fn := func(op byte, fin bool, p []byte) {
			switch op {
			case hub.OpcodeText:
				got = append(got, string(p))
			case hub.OpcodePing:
				pings++
			}
		}
		used, err := parseFrames(stream[:cut], fn)
		if err != nil {
			t.Fatal(err)
		}
		rest := append(append([]byte(nil), stream[used:cut]...), stream[cut:]...)
		used2, err := parseFrames(rest, fn)
		if err != nil || used2 != len(rest) {
			t.Fatalf("cut %d: used %d of %d, err %v", cut, used2, len(rest), err)
		}
		if !slices.Equal(got, want) || pings != 1 {
			t.Fatalf("cut %d: got %d frames, %d pings", cut, len(got), pings)
		}
	}
}

func TestParseFramesRefuses(t *testing.T) {
	if _, err := parseFrames([]byte{0xC1, 0}, func(byte, bool, []byte) {}); err == nil {
		t.Fatal("reserved bit accepted")
	}
	huge := []byte{0x81, 127, 0, 0, 0, 0, 0x10, 0, 0, 0}
	if _, err := parseFrames(huge, func(byte, bool, []byte) {}); err == nil {
		t.Fatal("256 MiB frame accepted")
	}
}

func TestPercentile(t *testing.T) {
	v := make([]int64, 100)
	for i := range v {
		v[i] = int64(i + 1) // 1..100
	}
	for _, c := range []struct {
		p    float64
		want int64
	}{{50, 50}, {95, 95}, {99, 99}, {100, 100}, {0.1, 1}, {1, 1}} {
		if got := percentile(v, c.p); got != c.want {
			t.Errorf("p%v = %d, want %d", c.p, got, c.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("empty: %d", got)
	}
	if got := percentile([]int64{7}, 99); got != 7 {
		t.Errorf("one value: %d", got)
	}
	// Nearest rank on 10 values: p95 is the 10th, p50 the 5th.
	ten := []int64{10, 20, 30, 40, 50, 60, 70, 80, 90, 100}
	if percentile(ten, 95) != 100 || percentile(ten, 50) != 50 {
		t.Errorf("ten: p95 %d p50 %d", percentile(ten, 95), percentile(ten, 50))
	}
	l := summarise([]int64{3e6, 1e6, 2e6})
	if l.P50 != 2 || l.Max != 3 {
		t.Errorf("summarise: %+v", l)
	}
}

func TestFindInt(t *testing.T) {
	now := int64(1795000000123456789)
	broadcast := []byte(fmt.Sprintf(`{"event":"tick","channel":"bench:all","data":{"t":%d,"n":17}}`, now))
	if v, ok := findInt(broadcast, keyT); !ok || v != now {
		t.Fatalf("t: %d %v", v, ok)
	}
	if v, ok := findInt(broadcast, keyN); !ok || v != 17 {
		t.Fatalf("n: %d %v", v, ok)
	}
	notification := []byte(fmt.Sprintf(`{"event":"notification","channel":"user:bench-3","id":"9","data":{"id":"01M84WWD154RWCTY1AMFMTMBQP","seq":9,"user":"bench-3","type":"message","title":"x","body":"","url":"","data":{"t":%d},"group":"","created_at":"2026-11-23T19:07:18.437Z","read_at":null,"expires_at":null}}`, now))
	if v, ok := findInt(notification, keyT); !ok || v != now {
		t.Fatalf("notification t: %d %v", v, ok)
	}
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{`{"t": 42}`, 42, true},
		{`{"t":-5}`, -5, true},
		{`{"t":0}`, 0, true},
		{`{"t":"42"}`, 0, false},
		{`{"t":}`, 0, false},
		{`{"at":1}`, 0, false},
		{`{"result":true}`, 0, false},
		{`{"t":9223372036854775807}`, math.MaxInt64, true},
		{`{"t":9223372036854775808}`, 0, false},
		{`{"t":12`, 12, true},
	} {
		v, ok := findInt([]byte(c.in), keyT)
		if v != c.want || ok != c.ok {
			t.Errorf("%s: got %d %v, want %d %v", c.in, v, ok, c.want, c.ok)
		}
	}
}

func TestParseStatTicks(t *testing.T) {
	// A command name with a space and a parenthesis, as the kernel allows.
	stat := "4242 (tid ings) x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 1520 371 0 0 20 0 9 0 8800 1300000000 15000 18446744073709551615 1 1 0 0 0 0 0 0 2143420159 0 0 0 17 1 0 0 0 0 0\n"
	u, s, err := parseStatTicks([]byte(stat))
	if err != nil || u != 1520 || s != 371 {
		t.Fatalf("utime %d stime %d err %v", u, s, err)
	}
	if _, _, err := parseStatTicks([]byte("4242 (x) S 1 2")); err == nil {
		t.Fatal("short stat accepted")
	}
	if _, _, err := parseStatTicks([]byte("garbage")); err == nil {
		t.Fatal("no command name accepted")
	}
}

func TestProcSelf(t *testing.T) {
	// This process's own figures: present and sane.
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Fatal("no /proc here:", err)
	}
	u, s, err := parseStatTicks(b)
	if err != nil || u < 0 || s < 0 {
		t.Fatalf("self: utime %d stime %d err %v", u, s, err)
	}
	if ticks, err := cpuTicks(os.Getpid()); err != nil || ticks < u+s {
		t.Fatalf("cpuTicks: %d %v (stat said %d)", ticks, err, u+s)
	}
	if hz := clockTicks(); hz <= 0 || hz > 10000 {
		t.Fatalf("clock ticks %d", hz)
	}
	if n, err := fdCount(os.Getpid()); err != nil || n < 3 {
		t.Fatalf("fdCount: %d %v", n, err)
	}
}

func TestParseAuxv(t *testing.T) {
	var b []byte
	for _, kv := range [][2]uint64{{6, 4096}, {atClkTck, 250}, {0, 0}} {
		b = binary.NativeEndian.AppendUint64(b, kv[0])
		b = binary.NativeEndian.AppendUint64(b, kv[1])
	}
	if v, ok := parseAuxvClkTck(b); !ok || v != 250 {
		t.Fatalf("got %d %v", v, ok)
	}
	if _, ok := parseAuxvClkTck(b[16*2:]); ok {
		t.Fatal("found past AT_NULL")
	}
}

func TestParseProcStatBusy(t *testing.T) {
	stat := "cpu  140297 157 63651 300229 2387 10 3074 5 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n"
	busy, err := parseProcStatBusy([]byte(stat))
	if want := int64(140297 + 157 + 63651 + 10 + 3074 + 5); err != nil || busy != want {
		t.Fatalf("busy %d err %v, want %d", busy, err, want)
	}
	if _, err := parseProcStatBusy([]byte("intr 1 2 3\n")); err == nil {
		t.Fatal("no cpu line accepted")
	}
}

func TestBroadcastSinkCountsOnce(t *testing.T) {
	var acks atomic.Int64
	s := &bcastSink{m: 70, acks: &acks, maxLat: make([]int64, 70), count: make([]int64, 70)}
	c := &wsConn{}
	frame := func(n int, sent int64) []byte {
		return []byte(fmt.Sprintf(`{"event":"tick","channel":"bench:all","data":{"t":%d,"n":%d}}`, sent, n))
	}
	s.text(c, []byte(`{"result":true}`), nil, 0)
	s.text(c, []byte(`{"result":true}`), nil, 0) // a second answer to a resent subscribe
	s.text(c, frame(65, 100), nil, 150)
	s.text(c, frame(3, 100), nil, 130) // published concurrently, fanned out after 65: not an anomaly
	s.text(c, frame(65, 100), nil, 160)
	s.text(c, []byte(`{"code":1,"msg":"not authenticated: send auth first"}`), nil, 0)
	if acks.Load() != 1 || s.got.Load() != 2 || s.dups != 1 || s.errs.Load() != 1 {
		t.Fatalf("acks %d got %d dups %d errs %d", acks.Load(), s.got.Load(), s.dups, s.errs.Load())
	}
	if s.maxLat[65] != 50 || s.count[3] != 1 || s.lastRecv != 150 {
		t.Fatalf("maxLat %d count %d lastRecv %d", s.maxLat[65], s.count[3], s.lastRecv)
	}
	// No frame carried the server's sequence: the order is not checked.
	tot := mergeBcast([]*bcastSink{s}, 70)
	if checked, out, _ := tot.order(); checked || out != nil || s.withoutSeq != 2 {
		t.Fatalf("order checked %v out %v without %d", checked, out, s.withoutSeq)
	}
}

// The order check follows the server's sequence (the envelope's id on a
// WebSocket, the id line over SSE), not the publication index.
func TestBroadcastSinkOrderBySeq(t *testing.T) {
	ws := func(seq, n int) []byte {
		return []byte(fmt.Sprintf(`{"event":"tick","channel":"bench:all","id":"%d","data":{"t":100,"n":%d}}`, seq, n))
	}
	var acks atomic.Int64
	s := &bcastSink{m: 10, acks: &acks, maxLat: make([]int64, 10), count: make([]int64, 10)}
	a, b := &wsConn{}, &wsConn{sse: true}
	// a: the channel ordered publication 2 before 1 (seq 1, 2): in order.
	s.text(a, ws(1, 2), nil, 200)
	s.text(a, ws(2, 1), nil, 200)
	// a: seq 4 came before seq 3: one anomaly; 5 after 3 is in order again.
	s.text(a, ws(4, 4), nil, 200)
	s.text(a, ws(3, 3), nil, 200)
	s.text(a, ws(5, 5), nil, 200)
	// b (SSE): data without an envelope, the sequence in the id line.
	sse := func(n int) []byte { return []byte(fmt.Sprintf(`{"t":100,"n":%d}`, n)) }
	s.text(b, sse(0), []byte("7"), 200)
	s.text(b, sse(1), []byte("7"), 200) // the same seq again: not greater
	s.text(b, sse(2), []byte("9"), 200)
	if s.got.Load() != 8 || s.withSeq != 8 || s.withoutSeq != 0 || s.outOfOrder != 2 {
		t.Fatalf("got %d withSeq %d withoutSeq %d outOfOrder %d", s.got.Load(), s.withSeq, s.withoutSeq, s.outOfOrder)
	}
	tot := mergeBcast([]*bcastSink{s}, 10)
	if checked, out, without := tot.order(); !checked || out == nil || *out != 2 || without != 0 {
		t.Fatalf("order: checked %v out %v without %d", checked, out, without)
	}
	// Some deliveries with a sequence and some without: not checked, but
	// what was seen is still told.
	s.text(b, sse(3), nil, 200)
	tot = mergeBcast([]*bcastSink{s}, 10)
	if checked, out, without := tot.order(); checked || out == nil || without != 1 {
		t.Fatalf("mixed: checked %v out %v without %d", checked, out, without)
	}
}

func TestEventSeq(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{`{"event":"tick","channel":"bench:all","id":"17","data":{"t":1,"n":2}}`, 17, true},
		{`{"event":"tick","channel":"bench:all","data":{"t":1,"n":2}}`, 0, false},
		// A notification's data has an "id" (a ULID) too: only the envelope's counts.
		{`{"event":"notification","channel":"user:u","data":{"id":"01M84WWD154RWCTY1AMFMTMBQP","seq":9}}`, 0, false},
		{`{"event":"notification","channel":"user:u","id":"9","data":{"id":"01M84WWD154RWCTY1AMFMTMBQP","seq":9}}`, 9, true},
		{`{"event":"x","channel":"c","id":"abc","data":null}`, 0, false},
		{`{"event":"x","channel":"c","id":"","data":null}`, 0, false},
		{`{"event":"x","channel":"c","id":"12`, 0, false},
	} {
		v, ok := eventSeq(&wsConn{}, []byte(c.in), nil)
		if v != c.want || ok != c.ok {
			t.Errorf("%s: got %d %v, want %d %v", c.in, v, ok, c.want, c.ok)
		}
	}
	sse := &wsConn{sse: true}
	for _, c := range []struct {
		id   []byte
		want int64
		ok   bool
	}{{[]byte("42"), 42, true}, {nil, 0, false}, {[]byte(""), 0, false}, {[]byte("4a"), 0, false}, {[]byte("0"), 0, true}} {
		if v, ok := eventSeq(sse, []byte(`{"id":"5","t":1}`), c.id); v != c.want || ok != c.ok {
			t.Errorf("sse id %q: got %d %v", c.id, v, ok)
		}
	}
}

type sseEvent struct{ id, data string }

func collectSSE(t *testing.T, stream []byte) ([]sseEvent, int) {
	t.Helper()
	var got []sseEvent
	var scratch []byte
	used, err := parseSSE(stream, &scratch, func(id, data []byte) {
		e := sseEvent{data: string(data)}
		if id != nil {
			e.id = "=" + string(id) // tells an empty id line from none
		}
		got = append(got, e)
	})
	if err != nil {
		t.Fatal(err)
	}
	return got, used
}

func TestParseSSE(t *testing.T) {
	stream := []byte("\n" + // the blank line after ": ok", carried from the handshake
		"id: 1\nevent: tick\ndata: {\"t\":5,\"n\":0}\n\n" +
		": keep-alive\n\n" +
		"retry: 3000\n\n" +
		"event: tick\ndata: {\"t\":6,\"n\":1}\n\n" + // no history: no id
		"id: 3\r\nevent: notification\r\ndata: first\r\ndata:second\r\ndata: third\r\n\r\n" +
		"data\n\n" + // a data field with no colon: empty data, still an event
		"id\nevent: read\n\n" + // no data: not dispatched
		": comment\nid: 4\ndata: {\"t\":7}\n\n")
	want := []sseEvent{
		{"=1", `{"t":5,"n":0}`},
		{"", `{"t":6,"n":1}`},
		{"=3", "first\nsecond\nthird"},
		{"", ""},
		{"=4", `{"t":7}`},
	}
	got, used := collectSSE(t, stream)
	if used != len(stream) || !slices.Equal(got, want) {
		t.Fatalf("used %d of %d\ngot  %q\nwant %q", used, len(stream), got, want)
	}
	// Cut at every point: the complete events come out whole, once; the
	// rest waits for more bytes.
	for cut := 0; cut <= len(stream); cut++ {
		got1, used1 := collectSSE(t, stream[:cut])
		rest := append(append([]byte(nil), stream[used1:cut]...), stream[cut:]...)
		got2, used2 := collectSSE(t, rest)
		if used2 != len(rest) || !slices.Equal(append(got1, got2...), want) {
			t.Fatalf("cut %d: used %d of %d, got %q", cut, used2, len(rest), append(got1, got2...))
		}
	}
	// An incomplete event is left whole.
	part := []byte("id: 9\ndata: {\"t\":1}\n")
	if got, used := collectSSE(t, part); len(got) != 0 || used != 0 {
		t.Fatalf("incomplete: %q, used %d", got, used)
	}
	// An endless event is refused.
	var scratch []byte
	if _, err := parseSSE(bytes.Repeat([]byte("data: x\n"), maxFramePayload/8+2), &scratch, func(_, _ []byte) {}); err == nil {
		t.Fatal("endless event accepted")
	}
}

func TestParseSSENoAlloc(t *testing.T) {
	stream := []byte("id: 12\nevent: tick\ndata: {\"t\":1795000000123456789,\"n\":3}\n\n: keep-alive\n\n")
	var scratch []byte
	n := 0
	fn := func(id, data []byte) { n += len(id) + len(data) }
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := parseSSE(stream, &scratch, fn); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per parse", allocs)
	}
}

func TestAppendNotification(t *testing.T) {
	b := appendNotification(nil, []int32{3, 0, 17}, 1795000000123456789)
	want := `{"users":["bench-3","bench-0","bench-17"],"title":"x","data":{"t":1795000000123456789}}`
	if string(b) != want {
		t.Fatalf("got %s", b)
	}
	for _, k := range []int{1, 5, 50} {
		p := newUserPicker(50, k)
		for range 20 {
			us := p.next()
			seen := map[int32]bool{}
			for _, u := range us {
				if u < 0 || u >= 50 || seen[u] {
					t.Fatalf("k=%d: users %v", k, us)
				}
				seen[u] = true
			}
			if len(us) != k {
				t.Fatalf("k=%d: %d users", k, len(us))
			}
		}
	}
}

func TestFloorFrame(t *testing.T) {
	f := floorFrame("bench:all", 16, 1795000000123456789)
	var got []string
	used, err := parseFrames(f, func(op byte, fin bool, p []byte) {
		if op != hub.OpcodeText || !fin {
			t.Fatalf("op %d fin %v", op, fin)
		}
		got = append(got, string(p))
	})
	want := `{"event":"tick","channel":"bench:all","id":"17","data":{"t":1795000000123456789,"n":16}}`
	if err != nil || used != len(f) || len(got) != 1 || got[0] != want {
		t.Fatalf("used %d of %d, err %v, got %q", used, len(f), err, got)
	}
	if v, ok := eventSeq(&wsConn{}, []byte(got[0]), nil); !ok || v != 17 {
		t.Fatalf("seq %d %v", v, ok)
	}
	long := unmaskedText(bytes.Repeat([]byte("x"), 300))
	if long[1] != 126 || len(long) != 304 {
		t.Fatalf("300-byte frame header % x", long[:4])
	}
}

type recorder struct {
	mu    sync.Mutex
	texts []string
}

func (r *recorder) text(_ *wsConn, p, _ []byte, _ int64) {
	r.mu.Lock()
	r.texts = append(r.texts, string(p))
	r.mu.Unlock()
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.texts)
}

// A loopback peer speaking the server side: the reader takes a frame that
// came with the handshake answer, answers a ping, joins a frame split
// across writes, and sees the close.
func TestDialAndRead(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal("no loopback:", err)
	}
	defer ln.Close()
	pong := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil || line == "\r\n" {
				break
			}
		}
		// The answer and a first frame in one write.
		_, _ = c.Write(append([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
			serverFrame(hub.OpcodeText, []byte(`{"result":true}`))...))
		_, _ = c.Write(serverFrame(hub.OpcodePing, []byte("hi")))
		var hdr [8]byte // pong: 2 header bytes, 4 key bytes, 2 payload bytes
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			pong <- nil
			return
		}
		pong <- hdr[:]
		f := serverFrame(hub.OpcodeText, []byte(`{"event":"tick","data":{"t":5,"n":0}}`))
		_, _ = c.Write(f[:7])
		time.Sleep(20 * time.Millisecond)
		_, _ = c.Write(f[7:])
		_, _ = c.Write(serverFrame(hub.OpcodeClose, []byte{0x03, 0xe8, 'b', 'y', 'e'}))
		time.Sleep(100 * time.Millisecond)
	}()
	u, _ := url.Parse("ws://" + ln.Addr().String() + "/v1/ws")
	c, err := dialWS(u, "token", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rec := &recorder{}
	rd, err := newReaders(1, 1, newClock(), func(int) textHandler { return rec })
	if err != nil {
		t.Fatal(err)
	}
	defer rd.close()
	if err := rd.add(c); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-pong:
		if p == nil || p[0] != 0x80|hub.OpcodePong || p[1] != 0x80|2 {
			t.Fatalf("pong frame % x", p)
		}
		payload := append([]byte(nil), p[6:8]...)
		mask(payload, [4]byte(p[2:6]))
		if string(payload) != "hi" {
			t.Fatalf("pong payload %q", payload)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no pong")
	}
	if !waitFor(5*time.Second, func() bool { return rd.closes.Load() == 1 }) {
		t.Fatal("close not seen")
	}
	want := []string{`{"result":true}`, `{"event":"tick","data":{"t":5,"n":0}}`}
	if got := rec.got(); !slices.Equal(got, want) {
		t.Fatalf("texts %q", got)
	}
	if end := rd.firstEndText(); end != `close 1000 "bye"` {
		t.Fatalf("end %q", end)
	}
}

// idRecorder records SSE events with their id lines.
type idRecorder struct {
	mu     sync.Mutex
	events []sseEvent
}

func (r *idRecorder) text(_ *wsConn, p, id []byte, _ int64) {
	e := sseEvent{data: string(p)}
	if id != nil {
		e.id = "=" + string(id)
	}
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *idRecorder) got() []sseEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// A loopback peer speaking a Tidings SSE stream: dialSSE sends the
// channel, the token and Last-Event-ID; the reader takes an event that
// came with the answer head, joins an event split across writes, drops
// keep-alive comments, and sees the end of the stream.
func TestDialSSEAndRead(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal("no loopback:", err)
	}
	defer ln.Close()
	reqLine := make(chan string, 2)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil || line == "\r\n" {
				break
			}
			if strings.HasPrefix(line, "GET ") || strings.HasPrefix(line, "Last-Event-ID:") {
				reqLine <- strings.TrimSpace(line)
			}
		}
		// The head, the first lines and a first event in one write.
		_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\nretry: 3000\n\n: ok\n\n" +
			"id: 1\nevent: tick\ndata: {\"t\":5,\"n\":0}\n\n"))
		ev := "id: 2\nevent: tick\ndata: {\"t\":6,\"n\":1}\n\n"
		_, _ = c.Write([]byte(ev[:9]))
		time.Sleep(20 * time.Millisecond)
		_, _ = c.Write([]byte(ev[9:] + ": keep-alive\n\n"))
		time.Sleep(20 * time.Millisecond)
		_, _ = c.Write([]byte("event: tick\ndata: {\"t\":7,\"n\":2}\n\n"))
		time.Sleep(100 * time.Millisecond)
	}()
	c, err := dialSSE(ln.Addr().String(), "/v1/sse", "channel=bench%3Aall", "tok", "17", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !c.sse {
		t.Fatal("not marked SSE")
	}
	if got := <-reqLine; got != "GET /v1/sse?channel=bench%3Aall&token=tok HTTP/1.1" {
		t.Fatalf("request line %q", got)
	}
	if got := <-reqLine; got != "Last-Event-ID: 17" {
		t.Fatalf("header %q", got)
	}
	rec := &idRecorder{}
	rd, err := newReaders(1, 1, newClock(), func(int) textHandler { return rec })
	if err != nil {
		t.Fatal(err)
	}
	defer rd.close()
	if err := rd.add(c); err != nil {
		t.Fatal(err)
	}
	if !waitFor(5*time.Second, func() bool { return rd.closes.Load() == 1 }) {
		t.Fatal("end of stream not seen")
	}
	want := []sseEvent{{"=1", `{"t":5,"n":0}`}, {"=2", `{"t":6,"n":1}`}, {"", `{"t":7,"n":2}`}}
	if got := rec.got(); !slices.Equal(got, want) {
		t.Fatalf("events %q", got)
	}
	if rd.badFrames.Load() != 0 {
		t.Fatalf("%d bad frames", rd.badFrames.Load())
	}
}

func TestReadAnswer(t *testing.T) {
	cases := []struct {
		name, in   string
		status     int
		keep       bool
		body, rest string
	}{
		{"length", "HTTP/1.1 202 Accepted\r\nContent-Length: 5\r\n\r\n{\"a\"}NEXT", 202, true, `{"a"}`, "NEXT"},
		{"chunked", "HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nTrailer: t\r\n\r\nNEXT", 400, true, "abcde", "NEXT"},
		{"close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nokNEXT", 200, false, "ok", "NEXT"},
		{"to the end", "HTTP/1.1 500 Internal Server Error\r\n\r\nall of it", 500, false, "all of it", ""},
		{"1.0", "HTTP/1.0 204 No Content\r\n\r\nNEXT", 204, false, "", "NEXT"},
		{"header case", "HTTP/1.1 202 Accepted\r\ncontent-length:1\r\n\r\nxNEXT", 202, true, "x", "NEXT"},
	}
	for _, c := range cases {
		br := bufio.NewReader(strings.NewReader(c.in))
		var body []byte
		status, keep, err := readAnswer(br, &body)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		rest, _ := io.ReadAll(br)
		if status != c.status || keep != c.keep || string(body) != c.body || string(rest) != c.rest {
			t.Fatalf("%s: status %d keep %v body %q rest %q", c.name, status, keep, body, rest)
		}
	}
	long := "HTTP/1.1 400 Bad Request\r\nContent-Length: 1000\r\n\r\n" + strings.Repeat("e", 1000)
	var body []byte
	if _, _, err := readAnswer(bufio.NewReader(strings.NewReader(long)), &body); err != nil || len(body) != maxErrorBody {
		t.Fatalf("long body: %d bytes kept, %v", len(body), err)
	}
	for _, bad := range []string{
		"", "HTTP/1.1 202 Accepted\r\n", "HTTP/2 200 OK\r\n\r\n", "HTTP/1.1 2x2 Bad\r\n\r\n",
		"HTTP/1.1 202 Accepted\r\nContent-Length: 10\r\n\r\nshort",
		"HTTP/1.1 202 Accepted\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 202 Accepted\r\nno colon\r\n\r\n",
		"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
	} {
		if _, _, err := readAnswer(bufio.NewReader(strings.NewReader(bad)), &body); err == nil {
			t.Fatalf("%q: no error", bad)
		}
	}
}

// The API client sends what the server needs, reuses its connections,
// and quotes an unexpected answer.
func TestAPIClient(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch {
		case r.Method == "GET" && r.URL.Path == "/base/healthz":
		case r.URL.Path == "/base/v1/close":
			w.Header().Set("Connection", "close")
			w.WriteHeader(202)
		case r.Method != "POST" || r.URL.Path != "/base/v1/publish" || r.Header.Get("Authorization") != "Bearer k" ||
			r.Header.Get("Content-Type") != "application/json" || string(b) != `{"x":1}`:
			http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, 400)
		default:
			w.WriteHeader(202)
			_, _ = w.Write([]byte(`{"ok":true}`))
		}
	}))
	// A warmed connection waits longer than this for its first request.
	srv.Config.ReadHeaderTimeout = 100 * time.Millisecond
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	u, _ := url.Parse(srv.URL + "/base")
	a := newAPIClient(&common{apiURL: u, apiKey: "k", timeout: 5 * time.Second}, 2)
	defer a.close()
	if err := a.warm(2); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	for range 10 {
		if _, err := a.post("/v1/publish", []byte(`{"x":1}`), 202); err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections for 10 requests, want the 2 warmed", n)
	}
	if _, err := a.post("/v1/close", nil, 202); err != nil {
		t.Fatal(err)
	}
	if _, err := a.post("/v1/publish", []byte(`{"x":1}`), 202); err != nil {
		t.Fatal(err)
	}
	status, err := a.post("/v1/other", []byte(`{}`), 202)
	if status != 400 || err == nil || !strings.Contains(err.Error(), "unexpected POST /base/v1/other") {
		t.Fatalf("status %d, %v", status, err)
	}
}

func TestFsyncFloor(t *testing.T) {
	for _, grow := range []bool{false, true} {
		dir := t.TempDir()
		res, err := fsyncFloor(dir, 4096, 2000, 200*time.Millisecond, grow)
		if err != nil {
			t.Fatal(err)
		}
		if res.Commits == 0 || res.Grow != grow || res.Sync.P50 <= 0 || res.Sync.Max < res.Sync.P99 ||
			res.P999 < res.Sync.P99 || res.Over5ms > res.Commits {
			t.Fatalf("grow %v: %+v", grow, res)
		}
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Fatalf("grow %v: %d files left behind", grow, len(left))
		}
	}
	if _, err := fsyncFloor("/nonexistent-dir", 4096, 100, time.Millisecond, false); err == nil {
		t.Fatal("no error for a missing directory")
	}
}
