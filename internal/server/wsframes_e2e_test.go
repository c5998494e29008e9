package server

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rawWS is a WebSocket client written frame by frame, to send what a
// library would not: fragments, interleaved control frames, a message cut
// into single bytes, protocol errors.
type rawWS struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

// upgradeRequest is the head of an upgrade with user's token.
func (n *node) upgradeRequest(user string) string {
	return "GET " + n.cfg.WSPath + "?token=" + url.QueryEscape(n.token(user)) + " HTTP/1.1\r\n" +
		"Host: " + strings.TrimPrefix(n.base, "http://") + "\r\n" +
		"Upgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
}

// dialRaw upgrades; after is sent in the same write as the request.
func (n *node) dialRaw(t *testing.T, user string, after []byte) *rawWS {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(n.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := c.Write(append([]byte(n.upgradeRequest(user)), after...)); err != nil {
		t.Fatal(err)
	}
	r := &rawWS{t: t, c: c, br: bufio.NewReader(c)}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	status, err := r.br.ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 101 ") {
		t.Fatalf("upgrade: %q %v", status, err)
	}
	accept := ""
	for {
		line, err := r.br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\r\n" {
			break
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "Sec-WebSocket-Accept") {
			accept = strings.TrimSpace(v)
		}
	}
	if accept != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" { // RFC 6455's own example
		t.Fatalf("Sec-WebSocket-Accept %q", accept)
	}
	return r
}

// frame encodes one client frame; masked as a client must unless told.
func frame(fin bool, op byte, payload []byte, masked bool) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	b := []byte{b0}
	mbit := byte(0)
	if masked {
		mbit = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		b = append(b, mbit|byte(n))
	case n < 1<<16:
		b = append(b, mbit|126, byte(n>>8), byte(n))
	default:
		b = append(b, mbit|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if !masked {
		return append(b, payload...)
	}
	mask := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	b = append(b, mask[:]...)
	for i, c := range payload {
		b = append(b, c^mask[i%4])
	}
	return b
}

func text(s string) []byte { return frame(true, 0x1, []byte(s), true) }

// read returns the next server frame's opcode and payload.
func (r *rawWS) read() (byte, []byte) {
	r.t.Helper()
	_ = r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var h [2]byte
	if _, err := io.ReadFull(r.br, h[:]); err != nil {
		r.t.Fatalf("read: %v", err)
	}
	if h[1]&0x80 != 0 {
		r.t.Fatal("server frame masked")
	}
	n := int(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		_, _ = io.ReadFull(r.br, l[:])
		n = int(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		_, _ = io.ReadFull(r.br, l[:])
		n = int(binary.BigEndian.Uint64(l[:]))
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r.br, p); err != nil {
		r.t.Fatalf("read payload: %v", err)
	}
	return h[0] & 0x0f, p
}

// readJSON returns the next text frame, decoded.
func (r *rawWS) readJSON() map[string]any {
	r.t.Helper()
	op, p := r.read()
	if op != 0x1 {
		r.t.Fatalf("opcode %#x (%q), want a text frame", op, p)
	}
	var m map[string]any
	if err := json.Unmarshal(p, &m); err != nil {
		r.t.Fatalf("%q: %v", p, err)
	}
	return m
}

// expectClose reads the server's close frame and then the end of the
// connection.
func (r *rawWS) expectClose(code int) {
	r.t.Helper()
	op, p := r.read()
	if op != 0x8 || len(p) < 2 || int(binary.BigEndian.Uint16(p)) != code {
		r.t.Fatalf("got opcode %#x %q, want close %d", op, p, code)
	}
	// A reset when the server closed with bytes of ours unread (the
	// oversized frame's), a plain end otherwise.
	if _, err := r.br.ReadByte(); err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
		r.t.Fatalf("after the close: %v, want the end of the connection", err)
	}
}

// A message in three fragments with a ping between them, written one
// byte at a time: the ping is answered at once, the message as a whole.
func TestWSFragmentsAndControlFramesOneByteAtATime(t *testing.T) {
	n := startNode(t)
	r := n.dialRaw(t, "alice", nil)
	var b []byte
	b = append(b, frame(false, 0x1, []byte(`{"op":"pi`), true)...)
	b = append(b, frame(false, 0x0, []byte(`ng","re`), true)...)
	b = append(b, frame(true, 0x9, []byte("are you there"), true)...)
	b = append(b, frame(true, 0x0, []byte(`f":7}`), true)...)
	for i := range b {
		if _, err := r.c.Write(b[i : i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if op, p := r.read(); op != 0xA || string(p) != "are you there" {
		t.Fatalf("got %#x %q, want the pong of the ping", op, p)
	}
	if m := r.readJSON(); m["op"] != "pong" || m["ref"] != 7.0 {
		t.Fatalf("reply %v", m)
	}
	// A 70,000-byte payload needs the 64-bit length: over the limit.
	if _, err := r.c.Write(frame(true, 0x1, make([]byte, 70000), true)); err != nil {
		t.Fatal(err)
	}
	r.expectClose(1009)
}

// Frames sent in the same packet as the upgrade request are read (the
// HTTP server had them buffered), a ping among them answered although the
// connection was not on the poller yet.
func TestWSFramesRightBehindTheUpgrade(t *testing.T) {
	n := startNode(t)
	var early []byte
	early = append(early, frame(true, 0x9, []byte("early"), true)...)
	early = append(early, text(`{"op":"ping","ref":1}`)...)
	early = append(early, text(`{"op":"ping","ref":2}`)...)
	r := n.dialRaw(t, "alice", early)
	if op, p := r.read(); op != 0xA || string(p) != "early" {
		t.Fatalf("got %#x %q, want the pong of the early ping", op, p)
	}
	for ref := 1.0; ref <= 2; ref++ {
		if m := r.readJSON(); m["op"] != "pong" || m["ref"] != ref {
			t.Fatalf("reply %v, want pong %v", m, ref)
		}
	}
}

// A protocol error in the frames right behind the upgrade closes the
// connection, and the server forgets it (nothing left counted).
func TestWSBadFrameRightBehindTheUpgrade(t *testing.T) {
	n := startNode(t)
	r := n.dialRaw(t, "alice", frame(true, 0x1, []byte(`{"op":"ping"}`), false))
	r.expectClose(1002)
	var stats struct{ Connections struct{ Total, WS int } }
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, out := n.do("GET", "/v1/admin/stats", testAdmin, nil)
		if err := json.Unmarshal(out, &stats); st != 200 || err != nil {
			t.Fatalf("stats: %d %s", st, out)
		}
		if stats.Connections.WS == 0 && stats.Connections.Total == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still counted: %s", out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Protocol errors close with their code; a binary message only gets an
// error reply; the client's close is answered with its code.
func TestWSProtocolErrors(t *testing.T) {
	n := startNode(t)
	cases := []struct {
		name string
		send []byte
		code int
	}{
		{"unmasked", frame(true, 0x1, []byte(`{"op":"ping"}`), false), 1002},
		{"reserved bit", append([]byte{0xC1}, frame(true, 0x1, nil, true)[1:]...), 1002},
		{"unknown opcode", frame(true, 0x3, nil, true), 1002},
		{"fragmented ping", frame(false, 0x9, nil, true), 1002},
		{"control frame too long", frame(true, 0x9, make([]byte, 126), true), 1002},
		{"continuation of nothing", frame(true, 0x0, []byte("x"), true), 1002},
		{"new message inside a fragmented one", append(frame(false, 0x1, []byte("{"), true), text("{}")...), 1002},
		{"text not UTF-8", text("{\"op\":\"\xff\"}"), 1007},
		{"close of one byte", frame(true, 0x8, []byte{3}, true), 1002},
		{"close with a reserved code", frame(true, 0x8, []byte{0x03, 0xed}, true), 1002}, // 1005
		{"client close", frame(true, 0x8, []byte{0x03, 0xe8, 'b', 'y', 'e'}, true), 1000},
		{"client close 4000", frame(true, 0x8, []byte{0x0f, 0xa0}, true), 4000},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := n.dialRaw(t, "alice", nil)
			if _, err := r.c.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			r.expectClose(tc.code)
		})
	}
	t.Run("binary", func(t *testing.T) {
		// Answered in its turn: between the replies of the messages
		// around it.
		r := n.dialRaw(t, "alice", nil)
		var b []byte
		b = append(b, text(`{"op":"ping","ref":1}`)...)
		b = append(b, frame(true, 0x2, []byte(`{"op":"ping"}`), true)...)
		b = append(b, text(`{"op":"ping","ref":3}`)...)
		if _, err := r.c.Write(b); err != nil {
			t.Fatal(err)
		}
		if m := r.readJSON(); m["op"] != "pong" || m["ref"] != 1.0 {
			t.Fatalf("before the binary message: %v", m)
		}
		if m := r.readJSON(); m["code"] != 2.0 || !strings.Contains(m["msg"].(string), "only text frames") {
			t.Fatalf("binary message: %v", m)
		}
		if m := r.readJSON(); m["op"] != "pong" || m["ref"] != 3.0 {
			t.Fatalf("after the binary message: %v", m)
		}
	})
}

// The answers to the messages before a protocol error, or before the
// client's close, come before the close frame: the close waits its turn
// behind them (it once went straight to the socket, ahead of them).
func TestWSCloseComesAfterTheAnswers(t *testing.T) {
	n := startNode(t)
	for name, tc := range map[string]struct {
		last []byte
		code int
	}{
		"protocol error": {frame(true, 0x1, []byte(`{"op":"ping"}`), false), 1002},
		"client close":   {frame(true, 0x8, []byte{0x03, 0xe8}, true), 1000},
	} {
		t.Run(name, func(t *testing.T) {
			for round := range 20 {
				r := n.dialRaw(t, "alice", nil)
				var b []byte
				for ref := 1; ref <= 3; ref++ {
					b = append(b, text(fmt.Sprintf(`{"op":"ping","ref":%d}`, ref))...)
				}
				if _, err := r.c.Write(append(b, tc.last...)); err != nil {
					t.Fatal(err)
				}
				for ref := 1.0; ref <= 3; ref++ {
					if m := r.readJSON(); m["op"] != "pong" || m["ref"] != ref {
						t.Fatalf("round %d: reply %v, want pong %v before the close", round, m, ref)
					}
				}
				r.expectClose(tc.code)
			}
		})
	}
}

// The handshake refuses what is not a version-13 upgrade with a key.
func TestWSHandshakeRefusals(t *testing.T) {
	n := startNode(t)
	for name, mutate := range map[string]func(string) string{
		"version 8": func(s string) string {
			return strings.Replace(s, "Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8", 1)
		},
		"no key": func(s string) string {
			return strings.Replace(s, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "", 1)
		},
		"short key": func(s string) string {
			return strings.Replace(s, "dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=", 1)
		},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", strings.TrimPrefix(n.base, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write([]byte(mutate(n.upgradeRequest("alice")))); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			status, _ := bufio.NewReader(c).ReadString('\n')
			if !strings.HasPrefix(status, "HTTP/1.1 400 ") {
				t.Fatalf("status %q, want 400", status)
			}
		})
	}
}
