package hub

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"strings"
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
	f.wsOnce.Do(func() { f.ws = WSText(f.Msg.Envelope()) })
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

// WSText encodes payload as one unmasked, final WebSocket text frame (the
// server side of RFC 6455, section 5.2).
func WSText(payload []byte) []byte { return wsFrame(0x1, payload) }

// WSPing is a server ping control frame with an empty payload.
var WSPing = []byte{0x80 | 0x9, 0}

// WSClose encodes a close control frame with a status code and a reason
// (truncated to fit the 125-byte control frame limit).
func WSClose(code int, reason string) []byte {
	if len(reason) > 123 {
		reason = reason[:123]
	}
	p := make([]byte, 2+len(reason))
	binary.BigEndian.PutUint16(p, uint16(code))
	copy(p[2:], reason)
	return wsFrame(0x8, p)
}

func wsFrame(opcode byte, payload []byte) []byte {
	n := len(payload)
	var b []byte
	switch {
	case n < 126:
		b = make([]byte, 2, 2+n)
		b[1] = byte(n)
	case n <= 0xffff:
		b = make([]byte, 4, 4+n)
		b[1] = 126
		binary.BigEndian.PutUint16(b[2:], uint16(n))
	default:
		b = make([]byte, 10, 10+n)
		b[1] = 127
		binary.BigEndian.PutUint64(b[2:], uint64(n))
	}
	b[0] = 0x80 | opcode
	return append(b, payload...)
}

// EncodeSSE encodes m as one Server-Sent Events message: "id:" is the
// cursor (omitted when empty), "event:" the event type, "data:" the JSON (a
// raw publication's text, one data line per line of text).
func EncodeSSE(m *tidings.Message, id string) []byte {
	var b bytes.Buffer
	if id != "" {
		b.WriteString("id: ")
		b.WriteString(id)
		b.WriteByte('\n')
	}
	if m.Event != "" {
		b.WriteString("event: ")
		b.WriteString(m.Event)
		b.WriteByte('\n')
	}
	// A line break of any kind (CRLF, CR, LF) ends an SSE line: each
	// becomes a new data line, so no text is cut off.
	data := string(m.Data)
	data = strings.ReplaceAll(data, "\r\n", "\n")
	data = strings.ReplaceAll(data, "\r", "\n")
	for _, line := range strings.Split(data, "\n") {
		b.WriteString("data: ")
		b.WriteString(line)
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	return b.Bytes()
}
