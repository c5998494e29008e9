package server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// fastListener stands between the TCP listener and net/http. It looks at
// the first request of every new connection without taking it off the
// socket (MSG_PEEK). A GET of one of its routes (the WebSocket and SSE
// paths) is read and handed to the route's handler right there; every
// other connection goes to net/http untouched, which reads the same bytes
// again.
//
// Why: a request through net/http costs its connection a pair of 4 KiB
// bufio buffers, a connection context, a response and the server's
// bookkeeping. A WebSocket upgrade or an SSE stream hijacks the
// connection after one request, so the buffers are never reused: in a
// reconnect storm they were 56 % of the bytes the server allocated.
//
// Only what net/http would do the same way is taken: an HTTP/1.1 GET with
// a Host, no body, the exact path, a head of at most fastHeadBytes that
// came alone (nothing sent after it yet). Anything else, a wrong method, a
// longer head, a later request on a kept-alive connection, takes the
// net/http path to the same handlers.
type fastListener struct {
	net.Listener
	routes  map[string]http.Handler // by exact path; GET only
	starts  [][]byte                // "GET <path>" of each route
	timeout time.Duration           // for the first request's head, as ReadHeaderTimeout
	log     *slog.Logger

	conns     chan net.Conn // for net/http's Accept
	done      chan struct{}
	startOnce sync.Once
	closeOnce sync.Once
	served    atomic.Int64 // requests answered here (tests)
}

// fastHeadBytes bounds a head the fast path takes (a WebSocket upgrade
// from a browser is about 500 bytes; cookies may make it more).
const fastHeadBytes = 4 << 10

func newFastListener(ln net.Listener, routes map[string]http.Handler, timeout time.Duration, log *slog.Logger) *fastListener {
	l := &fastListener{Listener: ln, routes: routes, timeout: timeout, log: log,
		conns: make(chan net.Conn), done: make(chan struct{})}
	for p := range routes {
		l.starts = append(l.starts, []byte("GET "+p))
	}
	return l
}

// Accept hands net/http the connections the fast path left to it. The
// first call starts accepting: connections are served from when the HTTP
// server serves.
func (l *fastListener) Accept() (net.Conn, error) {
	l.startOnce.Do(func() { go l.run() })
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting; connections already accepted go on.
func (l *fastListener) Close() error {
	err := net.ErrClosed
	l.closeOnce.Do(func() {
		close(l.done)
		err = l.Listener.Close()
	})
	return err
}

// run accepts connections until the listener is closed. A failing accept
// (out of descriptors, say) is retried after a pause, as net/http does.
func (l *fastListener) run() {
	var pause time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				_ = l.Close()
				return
			}
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			l.log.Warn("accept failed; retrying", "err", err, "pause", pause)
			select {
			case <-time.After(pause):
			case <-l.done:
				return
			}
			continue
		}
		pause = 0
		go l.first(c)
	}
}

// headBuf is a pooled buffer for peeking at a request head, and the
// readers that parse it.
type headBuf struct {
	b  [fastHeadBytes]byte
	br *bufio.Reader
	rd bytes.Reader
}

var headBufs = sync.Pool{New: func() any {
	h := &headBuf{}
	h.br = bufio.NewReaderSize(&h.rd, fastHeadBytes)
	return h
}}

// first serves the connection's first request here or hands the
// connection to net/http.
func (l *fastListener) first(c net.Conn) {
	hb := headBufs.Get().(*headBuf)
	defer headBufs.Put(hb)
	n, end, err := l.peekHead(c, hb.b[:])
	if n == 0 && err != nil { // nothing came (or it was not a socket we can peek)
		if errors.Is(err, errNoPeek) {
			l.handoff(c)
			return
		}
		_ = c.Close()
		return
	}
	if end < 0 || end != n {
		l.handoff(c)
		return
	}
	hb.rd.Reset(hb.b[:end])
	hb.br.Reset(&hb.rd)
	req, err := http.ReadRequest(hb.br)
	if err != nil || req.Method != http.MethodGet || req.ProtoMajor != 1 || req.ProtoMinor != 1 ||
		req.Host == "" || req.URL.RawPath != "" || req.ContentLength != 0 || len(req.TransferEncoding) > 0 {
		l.handoff(c)
		return
	}
	h := l.routes[req.URL.Path]
	if h == nil {
		l.handoff(c)
		return
	}
	// The head is ours now: take it off the socket (it is all there).
	if _, err := io.ReadFull(c, hb.b[:end]); err != nil {
		_ = c.Close()
		return
	}
	l.served.Add(1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // as net/http's request context ends with ServeHTTP
	req = req.WithContext(ctx)
	req.RemoteAddr = c.RemoteAddr().String()
	w := &fastResponse{c: c, header: http.Header{}}
	// A handler's panic ends its connection, not the server (as in
	// net/http).
	defer func() {
		if v := recover(); v != nil {
			l.log.Error("panic serving a request", "remote", req.RemoteAddr, "path", req.URL.Path,
				"panic", v, "stack", string(debug.Stack()))
			if !w.hijacked {
				_ = c.Close()
			}
		}
	}()
	h.ServeHTTP(w, req)
	if !w.hijacked {
		w.finish()
		_ = c.Close()
	}
}

// handoff gives c to net/http, or closes it when the server is closing.
func (l *fastListener) handoff(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		_ = c.Close()
	}
}

var (
	crlfcrlf  = []byte("\r\n\r\n")
	errNoPeek = errors.New("connection cannot be peeked at")
)

// peekHead waits (up to the timeout) for a whole request head in c's
// socket buffer, peeking, so nothing is taken off the socket. It returns
// how many bytes it saw and where the head ends (-1: not whole), and stops
// early once the bytes cannot begin a request for a route.
func (l *fastListener) peekHead(c net.Conn, b []byte) (n, end int, err error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0, -1, errNoPeek
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, -1, errNoPeek
	}
	// The head is usually there by the time the connection is accepted:
	// a deadline (a timer) is set only when the wait is real.
	waiting := false
	defer func() {
		if waiting {
			_ = c.SetReadDeadline(time.Time{})
		}
	}()
	for {
		var perr error
		prev, wouldWait := n, false
		err = rc.Read(func(fd uintptr) bool {
			m, e := peekSocket(fd, b)
			if e == syscall.EAGAIN || (e == nil && m == prev && m > 0) {
				if !waiting {
					wouldWait = true
					return true // set the deadline first
				}
				return false // wait for (more) bytes
			}
			n, perr = max(m, 0), e
			return true
		})
		if wouldWait {
			waiting = true
			_ = c.SetReadDeadline(time.Now().Add(l.timeout))
			continue
		}
		if err == nil {
			err = perr
		}
		if err != nil {
			return n, -1, err
		}
		if n == 0 { // the peer closed without a byte
			return 0, -1, errors.New("closed before a request")
		}
		if i := bytes.Index(b[:n], crlfcrlf); i >= 0 {
			return n, i + len(crlfcrlf), nil
		}
		if n == len(b) || !l.mayRoute(b[:n]) {
			return n, -1, nil
		}
	}
}

// mayRoute reports whether b can begin a GET of one of the routes.
func (l *fastListener) mayRoute(b []byte) bool {
	for _, s := range l.starts {
		if len(b) <= len(s) {
			if bytes.HasPrefix(s, b) {
				return true
			}
			continue
		}
		if bytes.HasPrefix(b, s) && (b[len(s)] == ' ' || b[len(s)] == '?') {
			return true
		}
	}
	return false
}

// fastResponse is the ResponseWriter of a request served by the fast
// path: a handler either hijacks the connection (an upgrade, a stream) or
// answers an error, which is written whole, with Connection: close, once
// the handler returns.
type fastResponse struct {
	c        net.Conn
	header   http.Header
	status   int
	body     []byte
	hijacked bool
}

func (w *fastResponse) Header() http.Header { return w.header }

func (w *fastResponse) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *fastResponse) Write(p []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	w.WriteHeader(http.StatusOK)
	w.body = append(w.body, p...)
	return len(p), nil
}

// Hijack hands the connection over; nothing was read past the request's
// head, so the reader holds nothing buffered.
func (w *fastResponse) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	w.hijacked = true
	return w.c, bufio.NewReadWriter(bufio.NewReaderSize(w.c, 16), bufio.NewWriterSize(w.c, 16)), nil
}

// finish writes the answer the handler gave.
func (w *fastResponse) finish() {
	w.WriteHeader(http.StatusOK)
	h := w.header
	h.Set("Content-Length", strconv.Itoa(len(w.body)))
	h.Set("Connection", "close")
	if h.Get("Date") == "" {
		h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 " + strconv.Itoa(w.status) + " " + http.StatusText(w.status) + "\r\n")
	_ = h.Write(&b)
	b.WriteString("\r\n")
	b.Write(w.body)
	_ = w.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, _ = w.c.Write(b.Bytes())
}
