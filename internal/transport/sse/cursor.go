package sse

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/tidings/tidings"
)

// cursor is where a reconnecting client resumes: one channel of the
// stream, after seq.
type cursor struct {
	channel string
	after   int64
}

// lastEventID is the cursor text a client sent: the Last-Event-ID header
// (what EventSource sends on a reconnect), else the query parameter
// lastEventId, else last_event_id, for proxies and clients that cannot set
// the header. "" means none: the stream starts live.
func lastEventID(r *http.Request) string {
	if v := strings.TrimSpace(r.Header.Get("Last-Event-ID")); v != "" {
		return v
	}
	q := r.URL.Query()
	if v := strings.TrimSpace(q.Get("lastEventId")); v != "" {
		return v
	}
	return strings.TrimSpace(q.Get("last_event_id"))
}

// parseCursor reads the cursor text of a stream over chans (resolved,
// without duplicates); resolve maps the "@user" alias. A one-channel
// stream takes the bare decimal seq its events carry (or "<channel>@<seq>"
// naming that channel); a stream of several channels takes
// "<channel>@<seq>", the id its events carry, and the channel must be one
// of the stream's. It returns nil when text is empty.
func parseCursor(text string, chans []string, resolve func(string) string) (*cursor, error) {
	if text == "" {
		return nil, nil
	}
	ch, num := "", text
	if i := strings.LastIndexByte(text, '@'); i >= 0 {
		ch, num = resolve(text[:i]), text[i+1:]
	}
	seq, ok := parseSeq(num)
	if !ok {
		return nil, tidings.Errorf(tidings.CodeBadRequest, "bad Last-Event-ID %q: want a cursor this stream sent", clip(text))
	}
	switch {
	case ch == "" && len(chans) == 1:
		return &cursor{channel: chans[0], after: seq}, nil
	case ch == "":
		return nil, tidings.Errorf(tidings.CodeBadRequest, "bad Last-Event-ID %q: a stream of several channels takes <channel>@<seq>", clip(text))
	}
	for _, c := range chans {
		if c == ch {
			return &cursor{channel: ch, after: seq}, nil
		}
	}
	return nil, tidings.Errorf(tidings.CodeBadRequest, "bad Last-Event-ID %q: channel %q is not in this stream", clip(text), clip(ch))
}

// parseSeq accepts a decimal integer >= 0: digits only, no sign.
func parseSeq(s string) (int64, bool) {
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

// clip bounds client text quoted back in an error message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
