package poll

import (
	"math"
	"strconv"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/internal/inbox"
)

// maxCursorLen bounds the cursor text a client may send.
const maxCursorLen = tidings.MaxCursorLen

// Cursors. A poll of one channel takes and answers that channel's seq as
// a decimal string ("17"). A poll of several channels takes and answers an
// opaque cursor: base64url, without padding, of the JSON object
// {"<channel>":<seq>,…}. Clients hand it back unchanged; a channel the
// object does not name starts from now.

// decodeCursor and encodeCursor: the opaque cursor of several channels,
// shared with the SSE transport.
func decodeCursor(text string) (map[string]int64, bool) { return tidings.DecodeCursor(text) }

func encodeCursor(m map[string]int64) string { return tidings.EncodeCursor(m) }

// parseSince reads the since parameter of a poll over chans (resolved,
// without duplicates). It returns each channel's cursor; a channel absent
// from the result starts from now. One channel takes its decimal seq (or
// an opaque cursor, so that a client that drops to one channel may keep
// its cursor); several take the opaque form only.
func parseSince(text string, chans []string) (map[string]int64, error) {
	if text == "" {
		return nil, nil
	}
	if len(chans) == 1 {
		if seq, ok := tidings.ParseSeq(text); ok {
			return map[string]int64{chans[0]: seq}, nil
		}
	}
	m, ok := decodeCursor(text)
	if !ok {
		if len(chans) == 1 {
			return nil, tidings.Errorf(tidings.CodeBadRequest, "since: %q is not a cursor (a seq such as 17, or a cursor this server sent)", clip(text))
		}
		return nil, tidings.Errorf(tidings.CodeBadRequest, "since: %q is not a cursor this server sent for these channels", clip(text))
	}
	out := make(map[string]int64, len(chans))
	for _, ch := range chans {
		if seq, ok := m[ch]; ok {
			out[ch] = seq
		}
	}
	return out, nil
}

// parseTimeout reads the timeout parameter: a Go duration ("25s") or plain
// seconds ("25"); "" is def; longer than max is max.
func parseTimeout(text string, def, max time.Duration) (time.Duration, error) {
	if text == "" {
		return min(def, max), nil
	}
	bad := tidings.Errorf(tidings.CodeBadRequest, "timeout: %q is not a duration such as \"25s\" or \"25\"", clip(text))
	if f, err := strconv.ParseFloat(text, 64); err == nil {
		switch {
		case math.IsNaN(f) || math.IsInf(f, 0) || f < 0:
			return 0, bad
		case f >= max.Seconds(): // also keeps a huge number from overflowing
			return max, nil
		}
	}
	d, err := inbox.ParseDuration(text)
	if err != nil || d < 0 {
		return 0, bad
	}
	return min(d, max), nil
}

// clip bounds client text quoted back in an error message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
