package tidings

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"time"
)

// The two encodings every delivery of a personal notification needs (the
// notification, then the event around it) are written by hand here: the
// same bytes encoding/json writes for the struct tags (tests hold them
// equal), without reflection or a second pass over the payload. The
// payloads they embed (Notification.Data, Message.Data) are already in
// the form encoding/json would give them: ingest passes what publishers
// send through CompactJSON, and everything else is produced by
// encoding/json.

// CompactJSON is raw, valid JSON, in the form encoding/json writes a
// json.RawMessage: no white space between tokens, and <, >, &, U+2028 and
// U+2029 in strings escaped. Invalid JSON comes back unchanged.
func CompactJSON(raw json.RawMessage) json.RawMessage {
	if bytes.IndexAny(raw, " \t\r\n<>&\u2028\u2029") < 0 {
		return raw // the common case: nothing to change
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return raw
	}
	var out bytes.Buffer
	json.HTMLEscape(&out, b.Bytes())
	return out.Bytes()
}

// AppendJSON appends n as encoding/json would encode it.
func (n *Notification) AppendJSON(b []byte) []byte {
	// Room for the plain case at once: the text, and 264 bytes for the
	// field names, quotes, the seq and three times at their longest.
	b = slices.Grow(b, len(n.ID)+len(n.User)+len(n.Type)+len(n.Title)+len(n.Body)+len(n.URL)+
		len(n.Data)+len(n.Group)+264)
	b = append(b, `{"id":`...)
	b = appendString(b, n.ID)
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, n.Seq, 10)
	b = append(b, `,"user":`...)
	b = appendString(b, n.User)
	b = append(b, `,"type":`...)
	b = appendString(b, n.Type)
	b = append(b, `,"title":`...)
	b = appendString(b, n.Title)
	b = append(b, `,"body":`...)
	b = appendString(b, n.Body)
	b = append(b, `,"url":`...)
	b = appendString(b, n.URL)
	b = append(b, `,"data":`...)
	b = appendRaw(b, n.Data)
	b = append(b, `,"group":`...)
	b = appendString(b, n.Group)
	b = append(b, `,"created_at":`...)
	b = appendTime(b, n.CreatedAt)
	b = append(b, `,"read_at":`...)
	b = appendTimePtr(b, n.ReadAt)
	b = append(b, `,"expires_at":`...)
	b = appendTimePtr(b, n.ExpiresAt)
	return append(b, '}')
}

// MarshalJSON makes encoding/json (the inbox API's answers) use AppendJSON.
func (n Notification) MarshalJSON() ([]byte, error) { return n.AppendJSON(nil), nil }

// AppendEnvelope appends the text a WebSocket client receives for m: a
// raw publication's text as is, else the ServerEvent
// {"event":…,"channel":…,"id":…,"data":…} (id only when set).
func (m *Message) AppendEnvelope(b []byte) []byte {
	if m.Raw {
		return append(b, m.Data...)
	}
	b = append(b, `{"event":`...)
	b = appendString(b, m.Event)
	b = append(b, `,"channel":`...)
	b = appendString(b, m.Channel)
	if m.ID != "" {
		b = append(b, `,"id":`...)
		b = appendString(b, m.ID)
	}
	b = append(b, `,"data":`...)
	b = appendRaw(b, m.Data)
	return append(b, '}')
}

// EnvelopeSize is an upper bound of AppendEnvelope's length for m when
// its strings need no escaping, to size a buffer once.
func (m *Message) EnvelopeSize() int {
	return len(m.Event) + len(m.Channel) + len(m.ID) + len(m.Data) + 48
}

// appendString appends s as a JSON string. Plain text is copied; anything
// encoding/json would escape (control characters, quotes, backslashes,
// <, >, &, and all non-ASCII, for its UTF-8 checks and U+2028/U+2029)
// goes through encoding/json itself, so the bytes are the same.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendRaw appends a JSON payload; none is null, as encoding/json writes
// an empty json.RawMessage.
func appendRaw(b []byte, raw json.RawMessage) []byte {
	if len(raw) == 0 {
		return append(b, "null"...)
	}
	return append(b, raw...)
}

// appendTime appends t as time.Time's MarshalJSON does (RFC 3339 with
// nanoseconds, quoted).
func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

func appendTimePtr(b []byte, t *time.Time) []byte {
	if t == nil {
		return append(b, "null"...)
	}
	return appendTime(b, *t)
}
