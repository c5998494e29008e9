//go:build linux

package main

// The client side of RFC 6455, as little of it as the scenarios need: the
// opening handshake, masked text frames out, and a reader for what the
// server sends (unmasked text frames, pings, close). The same reader takes
// Server-Sent Events streams (dialSSE): their events' data is handed on as
// a WebSocket text payload is. Reading is done by a few epoll loops over
// every connection's socket, not by one goroutine per connection, so the
// client stays cheap next to the server it measures.

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tidings/tidings/internal/hub"
)

// maxFramePayload bounds what the reader accepts from the server.
const maxFramePayload = 1 << 20

// wsConn is one client connection: a WebSocket, or an SSE stream when sse
// is set.
type wsConn struct {
	net.Conn
	idx int  // position in the scenario's connection list
	fd  int  // set when the connection is handed to a reader
	sse bool // a Server-Sent Events stream, not a WebSocket

	// Owned by the reader loop the connection belongs to.
	carry   []byte // an incomplete frame or event (or bytes that came with the handshake)
	dead    bool
	seen    []uint64 // scenario state: publication indexes seen
	lastSeq int64    // scenario state: the server sequence of the last delivery
	hasSeq  bool     // scenario state: lastSeq is set

	acked atomic.Bool // scenario state: the awaited reply has arrived
}

// sendText writes one masked text frame.
func (c *wsConn) sendText(payload []byte) error {
	_, err := c.Write(clientFrame(hub.OpcodeText, payload))
	return err
}

// clientFrame encodes one final client frame with a fresh masking key.
func clientFrame(op byte, payload []byte) []byte {
	var key [4]byte
	binary.LittleEndian.PutUint32(key[:], mrand.Uint32())
	return maskedFrame(op, payload, key)
}

// maskedFrame encodes one final frame masked with key (a client frame).
func maskedFrame(op byte, payload []byte, key [4]byte) []byte {
	n := len(payload)
	var b []byte
	switch {
	case n < 126:
		b = make([]byte, 2, 6+n)
		b[1] = byte(n)
	case n <= 0xffff:
		b = make([]byte, 4, 8+n)
		b[1] = 126
		binary.BigEndian.PutUint16(b[2:], uint16(n))
	default:
		b = make([]byte, 10, 14+n)
		b[1] = 127
		binary.BigEndian.PutUint64(b[2:], uint64(n))
	}
	b[0] = 0x80 | op
	b[1] |= 0x80
	b = append(b, key[:]...)
	start := len(b)
	b = append(b, payload...)
	mask(b[start:], key)
	return b
}

// mask XORs p with the masking key, in place (masking and unmasking are
// the same operation).
func mask(p []byte, key [4]byte) {
	for i := range p {
		p[i] ^= key[i&3]
	}
}

// errFrame is a frame the reader refuses.
var errFrame = errors.New("bad frame from server")

// parseFrames calls fn for every complete frame at the start of buf and
// returns how many bytes those frames took. A masked frame is unmasked in
// place. What is left past the returned count is an incomplete frame.
func parseFrames(buf []byte, fn func(op byte, fin bool, payload []byte)) (int, error) {
	off := 0
	for {
		b := buf[off:]
		if len(b) < 2 {
			return off, nil
		}
		fin := b[0]&0x80 != 0
		op := b[0] & 0x0f
		if b[0]&0x70 != 0 { // no extension was negotiated
			return off, fmt.Errorf("%w: reserved bits set", errFrame)
		}
		masked := b[1]&0x80 != 0
		n := uint64(b[1] & 0x7f)
		h := 2
		switch n {
		case 126:
			if len(b) < 4 {
				return off, nil
			}
			n = uint64(binary.BigEndian.Uint16(b[2:]))
			h = 4
		case 127:
			if len(b) < 10 {
				return off, nil
			}
			n = binary.BigEndian.Uint64(b[2:])
			h = 10
		}
		if n > maxFramePayload {
			return off, fmt.Errorf("%w: payload of %d bytes", errFrame, n)
		}
		var key [4]byte
		if masked {
			if len(b) < h+4 {
				return off, nil
			}
			copy(key[:], b[h:h+4])
			h += 4
		}
		if uint64(len(b)-h) < n {
			return off, nil
		}
		p := b[h : h+int(n)]
		if masked {
			mask(p, key)
		}
		fn(op, fin, p)
		off += h + int(n)
	}
}

// handshakeReaders are reused across dials: an idle connection keeps no
// read buffer.
var handshakeReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 1024) }}

// errSSE is a stream the reader refuses.
var errSSE = errors.New("bad event stream from server")

// parseSSE calls fn for every complete Server-Sent Events event at the
// start of buf that has data, and returns how many bytes the complete
// events (those ended by a blank line) took; what is left past it is an
// incomplete event. fn gets the value of the event's id line (nil when it
// had none) and its data: the values of its data lines joined with "\n",
// built in *scratch when there are several (one data line is handed on in
// place, with no copy). Comment lines (": keep-alive"), event and retry
// lines, and events without data are taken and dropped. Lines end with
// LF or CRLF (the server writes LF; a lone CR is not taken as a line end).
func parseSSE(buf []byte, scratch *[]byte, fn func(id, data []byte)) (int, error) {
	off := 0
	for {
		pos := off
		var id, data []byte
		nData := 0
		for {
			nl := bytes.IndexByte(buf[pos:], '\n')
			if nl < 0 {
				if len(buf)-off > maxFramePayload {
					return off, fmt.Errorf("%w: an event of more than %d bytes", errSSE, maxFramePayload)
				}
				return off, nil
			}
			line := buf[pos : pos+nl]
			pos += nl + 1
			if len(line) > 0 && line[len(line)-1] == '\r' {
				line = line[:len(line)-1]
			}
			if len(line) == 0 {
				break // the end of the event
			}
			if line[0] == ':' {
				continue // a comment
			}
			name, value := line, line[len(line):]
			if i := bytes.IndexByte(line, ':'); i >= 0 {
				name, value = line[:i], line[i+1:]
				if len(value) > 0 && value[0] == ' ' {
					value = value[1:]
				}
			}
			switch string(name) {
			case "data":
				switch nData {
				case 0:
					data = value
				case 1:
					*scratch = append(append(append((*scratch)[:0], data...), '\n'), value...)
					data = *scratch
				default:
					*scratch = append(append(*scratch, '\n'), value...)
					data = *scratch
				}
				nData++
			case "id":
				id = value
			}
		}
		if nData > 0 {
			fn(id, data)
		}
		off = pos
	}
}

// dialWS connects and performs the opening handshake with token in the
// query. Bytes the server sent right after its answer are kept in carry.
func dialWS(u *url.URL, token string, timeout time.Duration) (*wsConn, error) {
	c, err := dial(u.Host, timeout)
	if err != nil {
		return nil, err
	}
	var key [16]byte
	_, _ = rand.Read(key[:])
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	q := "token=" + url.QueryEscape(token)
	if u.RawQuery != "" {
		q = u.RawQuery + "&" + q
	}
	req := "GET " + path + "?" + q + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " +
		base64.StdEncoding.EncodeToString(key[:]) + "\r\n\r\n"
	carry, err := handshake(c, req, " 101 ", "\r\n", timeout)
	if err != nil {
		return nil, err
	}
	return &wsConn{Conn: c, fd: -1, carry: carry}, nil
}

// handshake writes req on c and reads the answer's lines up to endLine,
// within timeout; the status line must contain status. It returns the
// bytes the server sent after endLine, and closes c on failure.
func handshake(c net.Conn, req, status, endLine string, timeout time.Duration) ([]byte, error) {
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte(req)); err != nil {
		c.Close()
		return nil, err
	}
	br := handshakeReaders.Get().(*bufio.Reader)
	br.Reset(c)
	defer func() { br.Reset(nil); handshakeReaders.Put(br) }()
	line, err := br.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	if !strings.Contains(line, status) {
		c.Close()
		return nil, errors.New("handshake refused: " + strings.TrimSpace(line))
	}
	for i := 0; ; i++ {
		line, err := br.ReadString('\n')
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("handshake: %w", err)
		}
		if line == endLine {
			break
		}
		if i > 100 {
			c.Close()
			return nil, fmt.Errorf("handshake: no %q line", strings.TrimSpace(endLine))
		}
	}
	_ = c.SetDeadline(time.Time{})
	var carry []byte
	if n := br.Buffered(); n > 0 {
		p, _ := br.Peek(n)
		carry = append(carry, p...)
	}
	return carry, nil
}

// connFD returns the socket's descriptor; it stays valid while c is open.
func connFD(c net.Conn) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1, errors.New("not a socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return -1, err
	}
	return fd, nil
}

// dialSSE opens a Server-Sent Events stream at path with token (and query,
// when not empty, before it) and returns once the server's ": ok" comment
// arrived: the stream is subscribed. lastEventID, when not empty, is sent
// as Last-Event-ID. Bytes the server sent after ": ok" are kept in carry.
func dialSSE(host, path, query, token, lastEventID string, timeout time.Duration) (*wsConn, error) {
	c, err := dial(host, timeout)
	if err != nil {
		return nil, err
	}
	q := "token=" + url.QueryEscape(token)
	if query != "" {
		q = query + "&" + q
	}
	req := "GET " + path + "?" + q + " HTTP/1.1\r\nHost: " + host + "\r\nAccept: text/event-stream\r\n"
	if lastEventID != "" {
		req += "Last-Event-ID: " + lastEventID + "\r\n"
	}
	carry, err := handshake(c, req+"\r\n", " 200 ", ": ok\n", timeout)
	if err != nil {
		return nil, err
	}
	return &wsConn{Conn: c, fd: -1, sse: true, carry: carry}, nil
}

// textHandler receives the text frames (the data of SSE events) of the
// connections of one reader loop. It is called by that loop only (never
// concurrently), with now the time of the read the frame came in. id is
// the value of an SSE event's id line; nil for a WebSocket frame and for
// an event without one.
type textHandler interface {
	text(c *wsConn, payload, id []byte, now int64)
}

// keyID is the envelope's id: a channel's cursor, as a decimal string, on
// events of channels that keep history. keyData starts the envelope's data.
var (
	keyID   = []byte(`"id":"`)
	keyData = []byte(`"data":`)
)

// eventSeq is the server's sequence of a delivery: the numeric id line of
// an SSE event, or the "id" of a WebSocket event frame's envelope (which
// comes before its "data"). ok is false when it has none.
func eventSeq(c *wsConn, payload, id []byte) (int64, bool) {
	if c.sse {
		return parseDecimal(id)
	}
	i := bytes.Index(payload, keyID)
	if i < 0 {
		return 0, false
	}
	if d := bytes.Index(payload[:i], keyData); d >= 0 {
		return 0, false // an "id" of the data, not of the envelope
	}
	rest := payload[i+len(keyID):]
	end := bytes.IndexByte(rest, '"')
	if end < 0 {
		return 0, false
	}
	return parseDecimal(rest[:end])
}

// parseDecimal reads a non-negative decimal integer that is all of b.
func parseDecimal(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var v int64
	for _, ch := range b {
		if ch < '0' || ch > '9' {
			return 0, false
		}
		v = v*10 + int64(ch-'0')
	}
	return v, true
}

// orderCheck is a connection's check of its deliveries against the
// server's sequence: a delivery whose sequence is not greater than the
// previous one's is out of channel order. It reports whether seq was out
// of order. Concurrent publishes have no order of their own; the server's
// sequence is the order the channel gave them.
func orderCheck(c *wsConn, seq int64) bool {
	out := c.hasSeq && seq <= c.lastSeq
	c.lastSeq, c.hasSeq = seq, true
	return out
}

// readers is a set of epoll loops reading every connection of a scenario.
// Each loop's epoll descriptor is itself parked in Go's netpoller, so a
// loop waits without a blocking system call (a thread blocked in
// epoll_wait would keep the runtime's monitor busy taking its P back).
type readers struct {
	loops     []*readLoop
	conns     []atomic.Pointer[wsConn]
	clk       *clock
	stop      atomic.Bool
	wg        sync.WaitGroup
	closeOnce sync.Once

	closes    atomic.Int64 // connections the server closed (close frame or EOF)
	badFrames atomic.Int64
	pings     atomic.Int64
	mu        sync.Mutex
	firstEnd  string // how the first closed connection ended
}

type readLoop struct {
	r       *readers
	epfd    int
	file    *os.File // epfd, registered with the netpoller
	h       textHandler
	mu      sync.Mutex // held while frames are handled
	buf     []byte
	scratch []byte // joins the data lines of an SSE event
	events  []syscall.EpollEvent
}

// newReaders makes loops reading up to n connections; handler(i) is the
// frame handler of loop i.
func newReaders(loops, n int, clk *clock, handler func(i int) textHandler) (*readers, error) {
	r := &readers{conns: make([]atomic.Pointer[wsConn], n), clk: clk}
	for i := 0; i < loops; i++ {
		fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			r.closeLoops()
			return nil, fmt.Errorf("epoll: %w", err)
		}
		if err := syscall.SetNonblock(fd, true); err != nil { // so that os.NewFile polls it
			_ = syscall.Close(fd)
			r.closeLoops()
			return nil, fmt.Errorf("epoll: %w", err)
		}
		r.loops = append(r.loops, &readLoop{r: r, epfd: fd, file: os.NewFile(uintptr(fd), "epoll"), h: handler(i),
			buf: make([]byte, 64<<10), events: make([]syscall.EpollEvent, 256)})
	}
	for _, l := range r.loops {
		rc, err := l.file.SyscallConn()
		if err != nil {
			r.closeLoops()
			return nil, fmt.Errorf("epoll: %w", err)
		}
		r.wg.Add(1)
		go func() { defer r.wg.Done(); l.run(rc) }()
	}
	return r, nil
}

// add hands c (whose idx is set) to a loop.
func (r *readers) add(c *wsConn) error {
	fd, err := connFD(c.Conn)
	if err != nil {
		return err
	}
	c.fd = fd
	l := r.loops[c.idx%len(r.loops)]
	r.conns[c.idx].Store(c)
	if len(c.carry) > 0 { // frames that came with the handshake answer
		l.mu.Lock()
		l.consume(c, nil, r.clk.now())
		l.mu.Unlock()
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(c.idx)}
	return syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, &ev)
}

// close stops the loops; the connections stay open. Only the first call
// does anything.
func (r *readers) close() {
	r.closeOnce.Do(func() {
		r.stop.Store(true)
		for _, l := range r.loops {
			_ = l.file.SetReadDeadline(time.Now()) // wakes a parked loop
		}
		r.wg.Wait()
		r.closeLoops()
	})
}

// greetAll dials every token and hands each connection to the readers. A
// WebSocket then sends greeting and counts in acked when the scenario's
// handler sees the answer; an SSE stream was set up by its GET once ": ok"
// came, so it counts at once.
func (r *readers) greetAll(cm *common, tokens []string, greeting []byte, acked *atomic.Int64) *dialResult {
	return dialAll(cm, tokens, false, func(c *wsConn) error {
		if c.sse {
			c.acked.Store(true)
			acked.Add(1)
		}
		if err := r.add(c); err != nil {
			return err
		}
		if c.sse {
			return nil
		}
		return c.sendText(greeting)
	})
}

func (r *readers) closeLoops() {
	for _, l := range r.loops {
		_ = l.file.Close()
	}
}

func (r *readers) noteEnd(how string) {
	r.closes.Add(1)
	r.mu.Lock()
	if r.firstEnd == "" {
		r.firstEnd = how
	}
	r.mu.Unlock()
}

// run takes every ready event without blocking; when none is left, the
// netpoller parks the loop until the epoll descriptor is readable again.
func (l *readLoop) run(rc syscall.RawConn) {
	err := rc.Read(func(uintptr) bool {
		for !l.r.stop.Load() {
			n, err := syscall.EpollWait(l.epfd, l.events, 0)
			if err == syscall.EINTR {
				continue
			}
			if err != nil {
				l.r.noteEnd("epoll_wait: " + err.Error())
				return true
			}
			if n == 0 {
				return false // park until more is ready
			}
			now := l.r.clk.now()
			l.mu.Lock()
			for _, ev := range l.events[:n] {
				c := l.r.conns[ev.Fd].Load()
				if c == nil || c.dead {
					continue
				}
				l.read(c, now)
			}
			l.mu.Unlock()
		}
		return true
	})
	if err != nil && !l.r.stop.Load() {
		l.r.noteEnd("epoll loop: " + err.Error())
	}
}

// read takes what the socket has (one read; level-triggered epoll brings
// the connection back when more is waiting).
func (l *readLoop) read(c *wsConn, now int64) {
	n, err := syscall.Read(c.fd, l.buf)
	if err == syscall.EAGAIN || err == syscall.EINTR {
		return
	}
	if n <= 0 || err != nil {
		how := "connection closed by the server"
		if err != nil {
			how = "read: " + err.Error()
		}
		l.drop(c, how)
		return
	}
	l.consume(c, l.buf[:n], now)
}

// consume parses c's carried bytes followed by data.
func (l *readLoop) consume(c *wsConn, data []byte, now int64) {
	if len(c.carry) > 0 {
		c.carry = append(c.carry, data...)
		data = c.carry
	}
	var used int
	var err error
	if c.sse {
		used, err = parseSSE(data, &l.scratch, func(id, p []byte) {
			if !c.dead {
				l.h.text(c, p, id, now)
			}
		})
	} else {
		used, err = l.frames(c, data, now)
	}
	if err != nil {
		l.r.badFrames.Add(1)
		l.drop(c, err.Error())
	}
	if c.dead {
		c.carry = nil
		return
	}
	rest := data[used:]
	switch {
	case len(rest) == 0:
		c.carry = nil
	case len(c.carry) > 0: // data is c.carry
		c.carry = c.carry[:copy(c.carry, rest)]
	default:
		c.carry = append([]byte(nil), rest...)
	}
}

// frames handles the complete WebSocket frames at the start of data.
func (l *readLoop) frames(c *wsConn, data []byte, now int64) (int, error) {
	return parseFrames(data, func(op byte, fin bool, p []byte) {
		if c.dead {
			return
		}
		switch op {
		case hub.OpcodeText:
			if !fin {
				l.r.badFrames.Add(1) // the server never fragments
				return
			}
			l.h.text(c, p, nil, now)
		case hub.OpcodePing:
			l.r.pings.Add(1)
			_, _ = c.Write(clientFrame(hub.OpcodePong, p))
		case hub.OpcodePong:
		case hub.OpcodeClose:
			how := "close frame"
			if len(p) >= 2 {
				how = fmt.Sprintf("close %d %q", binary.BigEndian.Uint16(p), p[2:])
			}
			l.drop(c, how)
		default: // binary, continuation
			l.r.badFrames.Add(1)
		}
	})
}

func (l *readLoop) drop(c *wsConn, how string) {
	if c.dead {
		return
	}
	c.dead = true
	c.carry = nil
	if c.fd >= 0 {
		_ = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, c.fd, nil)
	}
	l.r.noteEnd(how)
}

// clock gives wall-clock nanoseconds that advance with the monotonic
// clock, so a clock step during a run does not distort latencies.
type clock struct {
	base      time.Time
	baseNanos int64
}

func newClock() *clock {
	t := time.Now()
	return &clock{base: t, baseNanos: t.UnixNano()}
}

func (k *clock) now() int64 { return k.baseNanos + int64(time.Since(k.base)) }
