package sse

import (
	"net/http"
	"strings"

	"github.com/tidings/tidings"
)

// cursor is where a reconnecting client resumes: a position per channel
// (channels it does not name start from now).
type cursor map[string]int64

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
// without duplicates). A one-channel stream takes the bare decimal seq its
// events carry; a stream of several channels takes the opaque cursor its
// events carry (tidings.EncodeCursor: every channel's position), and a
// one-channel stream accepts that too. Positions of channels not in the
// stream are ignored. It returns nil when text is empty.
func parseCursor(text string, chans []string) (cursor, error) {
	if text == "" {
		return nil, nil
	}
	if len(chans) == 1 {
		if seq, ok := tidings.ParseSeq(text); ok {
			return cursor{chans[0]: seq}, nil
		}
	}
	m, ok := tidings.DecodeCursor(text)
	if !ok {
		return nil, tidings.Errorf(tidings.CodeBadRequest, "bad Last-Event-ID %q: want a cursor this stream sent", clip(text))
	}
	cur := cursor{}
	for _, ch := range chans {
		if seq, ok := m[ch]; ok {
			cur[ch] = seq
		}
	}
	return cur, nil
}

// clip bounds client text quoted back in an error message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
