//go:build linux

package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// apiClient posts to the server's HTTP API over kept-alive HTTP/1.1
// connections of its own: a request is one write, an answer is read by the
// caller's goroutine from the connection's buffer. net/http's client hands
// every request to two more goroutines per connection; here their wakeups
// would be charged to the load tool on the CPUs it shares with the server.
type apiClient struct {
	addr    string // host:port
	prefix  string // path of the API base URL
	head    []byte // the header lines every request carries
	timeout time.Duration
	idle    chan *apiConn
}

type apiConn struct {
	c    net.Conn
	br   *bufio.Reader
	req  []byte
	body []byte // the answer's first bytes, for an error message
}

// maxErrorBody is how much of an unexpected answer an error quotes.
const maxErrorBody = 200

// newAPIClient keeps up to conns connections to the API (cm.finish has
// checked its URL).
func newAPIClient(cm *common, conns int) *apiClient {
	u := cm.apiURL
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	head := fmt.Appendf(nil, "Host: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n", u.Host, cm.apiKey)
	return &apiClient{addr: addr, prefix: u.EscapedPath(), head: head, timeout: cm.timeout, idle: make(chan *apiConn, conns)}
}

// warm opens n kept-alive connections now, so that no request of the
// measured window pays for a TCP handshake. Each carries one GET of
// /healthz at once: a server closes a new connection that sends nothing
// within its header timeout (10 s for Tidings), and at 1 publish/s a
// pooled connection may wait longer than that for its first request.
func (a *apiClient) warm(n int) error {
	for range min(n, cap(a.idle)) {
		c, err := a.dial()
		if err != nil {
			return err
		}
		_, kept, err := a.do(c, "GET", "/healthz", nil, 200)
		if err != nil {
			return err
		}
		if !kept {
			return errors.New("GET /healthz: the server closed the connection")
		}
	}
	return nil
}

func (a *apiClient) dial() (*apiConn, error) {
	c, err := dial(a.addr, a.timeout)
	if err != nil {
		return nil, err
	}
	return &apiConn{c: c, br: bufio.NewReaderSize(c, 4<<10)}, nil
}

func (a *apiClient) put(c *apiConn) {
	select {
	case a.idle <- c:
	default:
		_ = c.c.Close()
	}
}

// post sends body to path and returns the answer's status; an answer other
// than want is an error quoting its first bytes.
func (a *apiClient) post(path string, body []byte, want int) (int, error) {
	var c *apiConn
	select {
	case c = <-a.idle:
	default:
		var err error
		if c, err = a.dial(); err != nil {
			return 0, err
		}
	}
	status, _, err := a.do(c, "POST", path, body, want)
	return status, err
}

// do sends one request on c and reads its answer: its status, and whether
// c went back to the pool (the server keeps it open) or was closed. An
// answer other than want is an error quoting its first bytes.
func (a *apiClient) do(c *apiConn, method, path string, body []byte, want int) (status int, kept bool, err error) {
	c.req = append(c.req[:0], method...)
	c.req = append(c.req, ' ')
	c.req = append(c.req, a.prefix...)
	c.req = append(c.req, path...)
	c.req = append(c.req, " HTTP/1.1\r\n"...)
	c.req = append(c.req, a.head...)
	c.req = append(c.req, "Content-Length: "...)
	c.req = strconv.AppendInt(c.req, int64(len(body)), 10)
	c.req = append(c.req, "\r\n\r\n"...)
	c.req = append(c.req, body...)
	status, keep, err := c.roundTrip(a.timeout)
	if err != nil {
		_ = c.c.Close()
		return 0, false, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if status != want { // quoted before another request may reuse c.body
		err = fmt.Errorf("%s %s: %d %s", method, path, status, bytes.TrimSpace(c.body))
	}
	if keep {
		a.put(c)
	} else {
		_ = c.c.Close()
	}
	return status, keep, err
}

func (a *apiClient) close() {
	for {
		select {
		case c := <-a.idle:
			_ = c.c.Close()
		default:
			return
		}
	}
}

var errAnswer = errors.New("malformed HTTP answer")

// roundTrip writes c.req and reads the answer: its status, whether the
// connection may carry another request, and (in c.body) its first bytes.
func (c *apiConn) roundTrip(timeout time.Duration) (status int, keep bool, err error) {
	if err := c.c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return 0, false, err
	}
	if _, err := c.c.Write(c.req); err != nil {
		return 0, false, err
	}
	return readAnswer(c.br, &c.body)
}

// readAnswer reads one HTTP/1.1 answer from br: the status line, the
// header, and a body framed by Content-Length, chunks, or the end of the
// connection. body gets at most maxErrorBody bytes of it.
func readAnswer(br *bufio.Reader, body *[]byte) (status int, keep bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	// "HTTP/1.1 202 Accepted\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, false, errAnswer
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil || status < 100 {
		return 0, false, errAnswer
	}
	keep = line[7] == '1'
	length, chunked := int64(-1), false
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return 0, false, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return 0, false, errAnswer
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.ParseInt(string(value), 10, 64); err != nil || length < 0 {
				return 0, false, errAnswer
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			if bytes.EqualFold(value, []byte("close")) {
				keep = false
			}
		}
	}
	*body = (*body)[:0]
	switch {
	case status == 204 || status == 304:
	case chunked:
		err = readChunks(br, body)
	case length >= 0:
		err = readBody(br, body, length)
	default: // the body ends with the connection
		keep = false
		err = readBody(br, body, -1)
	}
	return status, keep, err
}

// readBody reads n bytes of body (n < 0: up to the end of the
// connection), keeping the first maxErrorBody.
func readBody(br *bufio.Reader, body *[]byte, n int64) error {
	for n != 0 {
		if _, err := br.Peek(1); err != nil {
			if err == io.EOF && n < 0 {
				return nil
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		m := br.Buffered()
		if n >= 0 && int64(m) > n {
			m = int(n)
		}
		p, _ := br.Peek(m)
		if keep := maxErrorBody - len(*body); keep > 0 {
			*body = append(*body, p[:min(m, keep)]...)
		}
		_, _ = br.Discard(m)
		if n > 0 {
			n -= int64(m)
		}
	}
	return nil
}

// readChunks reads a chunked body and its trailer.
func readChunks(br *bufio.Reader, body *[]byte) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		size, _, _ := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte(";"))
		n, err := strconv.ParseInt(string(bytes.TrimSpace(size)), 16, 64)
		if err != nil || n < 0 {
			return errAnswer
		}
		if n == 0 {
			for { // trailer, up to the empty line
				line, err := br.ReadSlice('\n')
				if err != nil {
					return err
				}
				if len(bytes.TrimRight(line, "\r\n")) == 0 {
					return nil
				}
			}
		}
		if err := readBody(br, body, n); err != nil {
			return err
		}
		if _, err := br.Discard(2); err != nil { // the chunk's CRLF
			return err
		}
	}
}
