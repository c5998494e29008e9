package tidings

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
)

// MaxCursorLen bounds the cursor text a client may send.
const MaxCursorLen = 64 << 10

// A cursor over several channels (a long-poll or an SSE stream of several
// channels) is opaque to clients: base64url, without padding, of the JSON
// object {"<channel>":<seq>,…}. Clients hand it back unchanged.

// EncodeCursor makes the cursor of several channels. Keys are encoded in
// sorted order, so the same positions give the same text.
func EncodeCursor(m map[string]int64) string {
	b, _ := json.Marshal(m) // a map of strings to integers always encodes
	return base64.RawURLEncoding.EncodeToString(b)
}

// DecodeCursor reads a cursor made by EncodeCursor; ok is false when text
// is not one.
func DecodeCursor(text string) (m map[string]int64, ok bool) {
	if len(text) > MaxCursorLen {
		return nil, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(text, "="))
	if err != nil {
		return nil, false
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, false
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, false
	}
	for _, seq := range m {
		if seq < 0 {
			return nil, false
		}
	}
	return m, true
}

// ParseSeq reads the cursor of one channel: a decimal integer >= 0,
// digits only, no sign.
func ParseSeq(s string) (int64, bool) {
	if s == "" || len(s) > 19 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}
