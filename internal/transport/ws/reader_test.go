package ws

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"reflect"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tidings/tidings/internal/hub"
	"github.com/tidings/tidings/internal/transport/netpoll"
)

// head encodes a client frame header: fin, opcode, a 7-, 16- or 64-bit
// length as the size asks, and a mask.
func head(fin bool, op byte, n uint64) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	b := []byte{b0}
	switch {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n < 1<<16:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, n)
	}
	return append(b, 1, 2, 3, 4)
}

func TestReadHead(t *testing.T) {
	const limit = 70000
	ok := []struct {
		in   []byte
		op   byte
		fin  bool
		n    int
		size int
	}{
		{head(true, hub.OpcodeText, 0), hub.OpcodeText, true, 0, 6},
		{head(true, hub.OpcodeText, 125), hub.OpcodeText, true, 125, 6},
		{head(false, hub.OpcodeBinary, 126), hub.OpcodeBinary, false, 126, 8},
		{head(true, hub.OpcodeContinuation, 65535), hub.OpcodeContinuation, true, 65535, 8},
		{head(true, hub.OpcodeText, 65536), hub.OpcodeText, true, 65536, 14},
		{head(true, hub.OpcodePing, 125), hub.OpcodePing, true, 125, 6},
		{head(true, hub.OpcodeClose, 2), hub.OpcodeClose, true, 2, 6},
	}
	// A ping of 125 bytes passes a limit below that: the limit is for
	// messages.
	if h, ok, err := readHead(head(true, hub.OpcodePing, 125), 10); !ok || err != nil || h.n != 125 {
		t.Fatalf("ping under a 10-byte limit: %+v %v %v", h, ok, err)
	}
	for _, c := range ok {
		for k := range len(c.in) { // every prefix: wait for more
			if _, got, err := readHead(c.in[:k], limit); got || err != nil {
				t.Fatalf("%x[:%d]: ok %v err %v, want to wait for more", c.in, k, got, err)
			}
		}
		h, got, err := readHead(append(c.in, 'x'), limit)
		if !got || err != nil || h.op != c.op || h.fin != c.fin || h.n != c.n || h.size != c.size || h.mask != [4]byte{1, 2, 3, 4} {
			t.Fatalf("%x: %+v ok %v err %v", c.in, h, got, err)
		}
	}
	bad := []struct {
		in   []byte
		code int
	}{
		{append([]byte{0x80 | 0x40 | hub.OpcodeText}, head(true, hub.OpcodeText, 0)[1:]...), 1002}, // RSV1
		{head(true, 0x3, 0), 1002},
		{head(true, 0xB, 0), 1002},
		{head(false, hub.OpcodePing, 0), 1002},
		{head(true, hub.OpcodePong, 126), 1002},
		{[]byte{0x80 | hub.OpcodeText, 5}, 1002}, // not masked
		{head(true, hub.OpcodeText, 1<<63), 1002},
		{head(true, hub.OpcodeText, limit+1), 1009},
		{head(true, hub.OpcodeText, 1<<40), 1009},
	}
	for _, c := range bad {
		if _, _, err := readHead(c.in, limit); err == nil || err.code != c.code {
			t.Fatalf("%x: err %v, want close %d", c.in, err, c.code)
		}
	}
}

func TestUnmask(t *testing.T) {
	p := []byte("Hello, masked world")
	m := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	q := bytes.Clone(p)
	unmask(q, m)
	unmask(q, m)
	if !bytes.Equal(p, q) {
		t.Fatalf("%q", q)
	}
}

// FuzzReadHead holds the header parser to what Parse relies on: a header
// it accepts fits in the bytes it was given and under the limit, every
// shorter prefix asks for more (never a different answer), and more bytes
// after it change nothing.
func FuzzReadHead(f *testing.F) {
	f.Add(head(true, hub.OpcodeText, 5), uint32(100))
	f.Add(head(true, hub.OpcodeText, 300), uint32(1000))
	f.Add(head(true, hub.OpcodeBinary, 70000), uint32(100000))
	f.Add(head(false, hub.OpcodeContinuation, 0), uint32(0))
	f.Add([]byte{0x88, 0x82, 0, 0, 0, 0, 3, 0xe8}, uint32(10))
	f.Fuzz(func(t *testing.T, b []byte, limit uint32) {
		lim := int(limit % (1 << 24))
		h, ok, err := readHead(b, lim)
		if err != nil {
			if err.code != 1002 && err.code != 1009 {
				t.Fatalf("close code %d", err.code)
			}
			return
		}
		if !ok {
			return
		}
		if h.size > len(b) || h.n < 0 || (h.op < hub.OpcodeClose && h.n > lim) || (h.op >= hub.OpcodeClose && h.n > 125) {
			t.Fatalf("%+v from %d bytes, limit %d", h, len(b), lim)
		}
		for k := range h.size {
			if _, got, e := readHead(b[:k], lim); got || e != nil {
				t.Fatalf("prefix of %d: ok %v err %v", k, got, e)
			}
		}
		h2, ok2, err2 := readHead(append(b[:h.size:h.size], 0xff, 0xff), lim)
		if !ok2 || err2 != nil || h2 != h {
			t.Fatalf("with more bytes: %+v %v %v, was %+v", h2, ok2, err2, h)
		}
	})
}

// parseOutcome is what Parse did with a connection's bytes: the messages
// queued for the executor, and what it wrote (pongs, a close frame).
type parseOutcome struct {
	queued []queued
	out    []byte
	failed bool
	rbuf   int
}

// feed parses chunks, in order, on a session whose connection is a real
// socket not on a poller (what it writes is read back from the peer) and
// whose executor never starts.
func feed(t testing.TB, limit int, chunks ...[]byte) parseOutcome {
	t.Helper()
	h := hub.New(hub.Options{Workers: 1})
	ss := &session{s: &Server{opt: Options{Hub: h, MaxFrameBytes: limit}}}
	nc := &ss.sock
	client := socketPair(t, nc)
	defer client.Close()
	h.AttachConn(&ss.conn, hub.KindWS, ss)
	for _, c := range chunks {
		ss.Parse(bytes.Clone(c)) // the poller's buffer is its own
	}
	_ = nc.Close()
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	out, err := io.ReadAll(client)
	if err != nil {
		t.Fatal(err)
	}
	return parseOutcome{queued: ss.queue, out: out, failed: ss.failed, rbuf: len(ss.rbuf)}
}

var pairListener struct {
	once sync.Once
	ln   net.Listener
	err  error
}

// socketPair is a loopback connection: the client's end is returned, the
// server's is taken into nc.
func socketPair(t testing.TB, nc *netpoll.Conn) net.Conn {
	t.Helper()
	pairListener.once.Do(func() { pairListener.ln, pairListener.err = net.Listen("tcp", "127.0.0.1:0") })
	if pairListener.err != nil {
		t.Fatal(pairListener.err)
	}
	client, err := net.Dial("tcp", pairListener.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err := pairListener.ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if err := netpoll.Take(nc, server); err != nil {
		t.Fatal(err)
	}
	return client
}

// FuzzParseChunks holds Parse to the same outcome however the bytes are
// cut into reads: whole, one byte at a time, or at the fuzzer's cuts.
func FuzzParseChunks(f *testing.F) {
	mask := func(fin bool, op byte, p string) []byte {
		b := head(fin, op, uint64(len(p)))
		for i := range len(p) {
			b = append(b, p[i]^byte(i%4+1))
		}
		return b
	}
	msg := append(mask(false, hub.OpcodeText, `{"op":"pi`), mask(true, hub.OpcodePing, "x")...)
	msg = append(msg, mask(true, hub.OpcodeContinuation, `ng"}`)...)
	f.Add(msg, []byte{3, 9, 1})
	f.Add(append(mask(true, hub.OpcodeBinary, "bin"), mask(true, hub.OpcodeText, "ping")...), []byte{1})
	f.Add(append(mask(true, hub.OpcodeText, "\xff"), mask(true, hub.OpcodeText, "after")...), []byte{2, 2})
	f.Add(mask(true, hub.OpcodeClose, "\x03\xe8bye"), []byte{4})
	f.Add([]byte{0x81, 0x05, 'h', 'e', 'l', 'l', 'o'}, []byte{1}) // not masked
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		const limit = 64
		whole := feed(t, limit, data)
		var chunks [][]byte
		rest := data
		for _, c := range cuts {
			k := int(c) % (len(rest) + 1)
			chunks = append(chunks, rest[:k])
			rest = rest[k:]
		}
		chunks = append(chunks, rest)
		var single [][]byte
		for i := range data {
			single = append(single, data[i:i+1])
		}
		for name, got := range map[string]parseOutcome{"cut": feed(t, limit, chunks...), "byte by byte": feed(t, limit, single...)} {
			if !reflect.DeepEqual(got, whole) {
				t.Fatalf("%s: %+v\nwhole: %+v", name, got, whole)
			}
		}
		for _, q := range whole.queued {
			if !q.binary && !utf8.Valid(q.msg) {
				t.Fatalf("queued text not UTF-8: %q", q.msg)
			}
			if len(q.msg) > limit {
				t.Fatalf("queued message of %d bytes over the limit", len(q.msg))
			}
		}
	})
}
