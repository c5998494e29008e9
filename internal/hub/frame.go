package hub

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"sync"

	"github.com/tidings/tidings"
)

// Kind is the wire encoding a connection wants.
type Kind uint8

const (
	KindWS       Kind = iota // WebSocket text frames
	KindSSE                  // Server-Sent Events, id: <cursor>
	KindSSEMulti             // Server-Sent Events of a multi-channel stream: the id line is per connection
	KindJSON                 // the server event as JSON, no framing (long-poll)
)

// Frame is one publication encoded for the wire. It is built once per
// message per node and shared, read-only, by every subscriber: the
// WebSocket bytes and the SSE bytes are each encoded at most once, on first
// use.
type Frame struct {
	Msg *tidings.Message

	wsOnce    sync.Once
	ws        []byte
	sseOnce   sync.Once
	sse       []byte
	multiOnce sync.Once
	multi     []byte
	jsonOnce  sync.Once
	json      []byte
}

// NewFrame wraps m; nothing is encoded until a subscriber needs it.
func NewFrame(m *tidings.Message) *Frame { return &Frame{Msg: m} }

// Bytes returns the encoding for kind.
func (f *Frame) Bytes(kind Kind) []byte {
	switch kind {
	case KindSSE:
		f.sseOnce.Do(func() { f.sse = EncodeSSE(f.Msg, f.Msg.ID) })
		return f.sse
	case KindSSEMulti:
		// Without the id line: the worker writes one per connection, the
		// cursor of all its channels (Conn.cursorLine).
		f.multiOnce.Do(func() { f.multi = EncodeSSE(f.Msg, "") })
		return f.multi
	case KindJSON:
		f.jsonOnce.Do(func() { f.json = JSONEvent(f.Msg) })
		return f.json
	}
	f.wsOnce.Do(func() { f.ws = wsEnvelope(f.Msg) })
	return f.ws
}

// JSONEvent is m as a server event object; a raw publication becomes
// {"event":"message","channel":…,"data":"<the text>"}.
func JSONEvent(m *tidings.Message) []byte {
	if !m.Raw {
		return m.Envelope()
	}
	text, _ := json.Marshal(string(m.Data))
	b, _ := json.Marshal(tidings.ServerEvent{Event: "message", Channel: m.Channel, Data: text})
	return b
}

// WebSocket opcodes (RFC 6455, section 5.2).
const (
	OpcodeContinuation = 0x0
	OpcodeText         = 0x1
	OpcodeBinary       = 0x2
	OpcodeClose        = 0x8
	OpcodePing         = 0x9
	OpcodePong         = 0xA
)

// WSText encodes payload as one unmasked, final WebSocket text frame (the
// server side of RFC 6455, section 5.2).
func WSText(payload []byte) []byte { return wsFrame(OpcodeText, payload) }

// WSPong is a WebSocket pong frame answering a ping with payload (at most
// 125 bytes, as a ping's).
func WSPong(payload []byte) []byte { return wsFrame(OpcodePong, payload) }

// WSPing is a server ping control frame with an empty payload.
var WSPing = []byte{0x80 | OpcodePing, 0}

// WSClose encodes a close control frame with a status code and a reason
// (truncated to fit the 125-byte control frame limit).
func WSClose(code int, reason string) []byte {
	if len(reason) > 123 {
		reason = reason[:123]
	}
	p := make([]byte, 2+len(reason))
	binary.BigEndian.PutUint16(p, uint16(code))
	copy(p[2:], reason)
	return wsFrame(OpcodeClose, p)
}

func wsFrame(opcode byte, payload []byte) []byte {
	b := make([]byte, maxHeader, maxHeader+len(payload))
	return putHeader(opcode, append(b, payload...))
}

// wsEnvelope is m's envelope in one text frame, encoded straight into the
// frame's buffer.
func wsEnvelope(m *tidings.Message) []byte {
	return putHeader(0x1, m.AppendEnvelope(make([]byte, maxHeader, maxHeader+m.EnvelopeSize())))
}

// maxHeader is the longest header of an unmasked frame.
const maxHeader = 10

// putHeader takes maxHeader bytes of room followed by the payload, writes
// the frame header at the end of the room, and returns the frame.
func putHeader(opcode byte, b []byte) []byte {
	n := len(b) - maxHeader
	var start int
	switch {
	case n < 126:
		start = maxHeader - 2
		b[start+1] = byte(n)
	case n <= 0xffff:
		start = maxHeader - 4
		b[start+1] = 126
		binary.BigEndian.PutUint16(b[start+2:], uint16(n))
	default:
		start = 0
		b[1] = 127
		binary.BigEndian.PutUint64(b[2:], uint64(n))
	}
	b[start] = 0x80 | opcode
	return b[start:]
}

// EncodeSSE encodes m as one Server-Sent Events message: "id:" is the
// cursor (omitted when empty), "event:" the event type, "data:" the JSON (a
// raw publication's text, one data line per line of text).
func EncodeSSE(m *tidings.Message, id string) []byte {
	data := []byte(m.Data)
	b := make([]byte, 0, len(id)+len(m.Event)+len(data)+24)
	if id != "" {
		b = append(b, "id: "...)
		b = append(b, id...)
		b = append(b, '\n')
	}
	if m.Event != "" {
		b = append(b, "event: "...)
		b = append(b, m.Event...)
		b = append(b, '\n')
	}
	// A line break of any kind (CRLF, CR, LF) ends an SSE line: each
	// starts a new data line, so no text is cut off. Compact JSON has
	// none: one line.
	for {
		i := bytes.IndexAny(data, "\r\n")
		b = append(b, "data: "...)
		if i < 0 {
			b = append(b, data...)
			b = append(b, '\n')
			break
		}
		b = append(b, data[:i]...)
		b = append(b, '\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	return append(b, '\n')
}
