package ws

import (
	"encoding/binary"
	"unicode/utf8"

	"github.com/tidings/tidings/internal/hub"
)

// Reading client frames (RFC 6455, section 5) on the poller.
//
// The poller hands a connection's bytes to session.Parse as they come.
// Whole frames are taken apart right there; an incomplete one is kept in
// the session's buffer until the rest arrives, and the buffer is dropped
// as soon as it is empty, so an idle connection holds none. Pings and
// pongs are answered on the poller; a text message is copied and queued
// for the session's executor (see enqueue), since its op may wait on the
// store or a webhook.

// frameHead is a parsed frame header.
type frameHead struct {
	fin  bool
	op   byte
	mask [4]byte
	n    int // payload bytes
	size int // header bytes
}

// closeError ends a connection: the frame broke the protocol (1002), its
// text is not UTF-8 (1007) or it is over the limit (1009).
type closeError struct {
	code   int
	reason string
}

func (e *closeError) Error() string { return e.reason }

func protocolError(reason string) *closeError { return &closeError{1002, reason} }

// errTooBig is the close of a frame or message over max_frame_bytes (the
// reason is the one PROTOCOL.md names).
var errTooBig = &closeError{1009, "message exceeds the configured limit"}

// readHead parses the header at the start of b. ok is false while b does
// not hold all of it; err is set when the frame breaks the protocol or
// its payload is over limit.
func readHead(b []byte, limit int) (h frameHead, ok bool, err *closeError) {
	if len(b) < 2 {
		return h, false, nil
	}
	if b[0]&0x70 != 0 {
		return h, false, protocolError("reserved bits set")
	}
	h.fin = b[0]&0x80 != 0
	h.op = b[0] & 0x0f
	switch h.op {
	case hub.OpcodeContinuation, hub.OpcodeText, hub.OpcodeBinary:
	case hub.OpcodeClose, hub.OpcodePing, hub.OpcodePong:
		if !h.fin {
			return h, false, protocolError("fragmented control frame")
		}
	default:
		return h, false, protocolError("unknown opcode")
	}
	if b[1]&0x80 == 0 {
		return h, false, protocolError("client frame not masked")
	}
	n, i := uint64(b[1]&0x7f), 2
	switch n {
	case 126:
		if len(b) < 4 {
			return h, false, nil
		}
		n, i = uint64(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return h, false, nil
		}
		n, i = binary.BigEndian.Uint64(b[2:]), 10
		if n>>63 != 0 {
			return h, false, protocolError("payload length out of range")
		}
	}
	if h.op >= hub.OpcodeClose && n > 125 {
		return h, false, protocolError("control frame over 125 bytes")
	}
	if h.op < hub.OpcodeClose && n > uint64(limit) { // control frames: 125 bytes, whatever the limit
		return h, false, errTooBig
	}
	if len(b) < i+4 {
		return h, false, nil
	}
	copy(h.mask[:], b[i:])
	h.n, h.size = int(n), i+4
	return h, true, nil
}

// unmask undoes the client's masking of p in place.
func unmask(p []byte, mask [4]byte) {
	for i := range p {
		p[i] ^= mask[i&3]
	}
}

// Parse implements netpoll.Session: it takes the bytes the poller read,
// one call at a time. A protocol error closes the connection with its
// code; what comes after it is ignored.
func (ss *session) Parse(data []byte) {
	if ss.failed {
		return
	}
	buffered := len(ss.rbuf) > 0
	if buffered {
		ss.rbuf = append(ss.rbuf, data...)
		data = ss.rbuf
	}
	limit := ss.s.opt.MaxFrameBytes
	for len(data) > 0 {
		h, ok, cerr := readHead(data, limit)
		if cerr == nil {
			if !ok || len(data) < h.size+h.n {
				break // the rest of the frame comes later
			}
			p := data[h.size : h.size+h.n]
			unmask(p, h.mask)
			data = data[h.size+h.n:]
			if cerr = ss.frame(h, p, limit); cerr == nil && ss.failed {
				ss.rbuf, ss.frag = nil, nil // the client's close, answered
				return
			}
		}
		if cerr != nil {
			ss.failed = true
			ss.rbuf, ss.frag = nil, nil
			ss.closeAfterReplies(cerr.code, cerr.reason)
			return
		}
	}
	switch {
	case len(data) == 0:
		ss.rbuf = nil // an idle connection keeps no buffer
	case buffered:
		ss.rbuf = ss.rbuf[:copy(ss.rbuf, data)]
	default:
		ss.rbuf = append([]byte(nil), data...) // data is the poller's buffer
	}
}

// frame handles one whole frame; p is its unmasked payload, valid only
// during the call.
func (ss *session) frame(h frameHead, p []byte, limit int) *closeError {
	switch h.op {
	case hub.OpcodePing:
		ss.conn.Touch()
		_ = ss.Write([][]byte{hub.WSPong(p)})
	case hub.OpcodePong:
		ss.conn.Touch()
	case hub.OpcodeClose:
		return ss.closeFrame(p)
	case hub.OpcodeText, hub.OpcodeBinary:
		if ss.frag != nil {
			return protocolError("new message inside a fragmented one")
		}
		if h.fin {
			return ss.message(h.op, append([]byte(nil), p...))
		}
		ss.fragOp = h.op
		ss.frag = append(make([]byte, 0, len(p)), p...)
	case hub.OpcodeContinuation:
		if ss.frag == nil {
			return protocolError("continuation of no message")
		}
		if len(ss.frag)+len(p) > limit {
			return errTooBig
		}
		ss.frag = append(ss.frag, p...)
		if h.fin {
			msg := ss.frag
			ss.frag = nil
			return ss.message(ss.fragOp, msg)
		}
	}
	return nil
}

// message takes a whole message it owns.
func (ss *session) message(op byte, msg []byte) *closeError {
	ss.conn.Touch()
	if op == hub.OpcodeText && !utf8.Valid(msg) {
		return &closeError{1007, "text message is not UTF-8"}
	}
	if !ss.enqueue(queued{msg: msg, binary: op == hub.OpcodeBinary}) {
		return &closeError{1008, "too many frames waiting for their answer"}
	}
	return nil
}

// closeFrame answers the client's close with the same code, then closes.
func (ss *session) closeFrame(p []byte) *closeError {
	code := 1000
	switch {
	case len(p) == 1:
		return protocolError("close frame of one byte")
	case len(p) >= 2:
		code = int(binary.BigEndian.Uint16(p))
		if !validCloseCode(code) {
			return protocolError("invalid close code")
		}
		if !utf8.Valid(p[2:]) {
			return &closeError{1007, "close reason is not UTF-8"}
		}
	}
	ss.failed = true // nothing after a close is read
	ss.closeAfterReplies(code, "")
	return nil
}

// validCloseCode reports whether a peer may send code (RFC 6455, 7.4).
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	default:
		return code >= 3000 && code <= 4999
	}
}
