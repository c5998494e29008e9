// Package poll is the long-polling transport of Tidings:
//
//	GET <poll_path>?channel=…&channel=…&since=…&timeout=…
//	200 {"events":[…],"cursor":"…"}
//
// A request answers at once when something newer than its cursor exists;
// otherwise it waits for the first live event (and briefly for those that
// follow it) or for its timeout. Nothing outlives the request: the cursor
// the client hands back is the whole state, so any node can answer the
// next poll and no sticky session is needed.
//
// Each request is a short-lived hub connection (hub.KindJSON) whose sink
// collects the server events, exactly as the WebSocket would send them.
// hub.Resume gives the catch-up from the cursor and the live events that
// follow without a gap or a duplicate.
package poll

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/internal/history"
	"github.com/tidings/tidings/internal/hub"
	"github.com/tidings/tidings/internal/inbox"
)

// The access interfaces the long-poll server needs (see the tidings
// package); Inbox is where missed messages and newest cursors come from.
type (
	Authenticator = tidings.Authenticator
	Authorizer    = tidings.Authorizer
	Inbox         = tidings.Replayer
)

// Defaults of Options.
const (
	DefaultTimeout    = 25 * time.Second
	DefaultTimeoutMax = 60 * time.Second
	DefaultLinger     = 20 * time.Millisecond
	DefaultMaxBatch   = 100
	DefaultOpTimeout  = 10 * time.Second
)

// flushWait bounds the wait for the hub to hand over what it delivered
// before the request left it (microseconds unless the hub is stopping).
const flushWait = 2 * time.Second

// Options of the long-poll handler.
type Options struct {
	Hub   *hub.Hub
	Auth  Authenticator
	Rules Authorizer
	Inbox Inbox
	Token func(r *http.Request) string // the request's user token (query, bearer, cookie)
	// KeepsHistory reports whether a channel can be replayed from a
	// cursor. nil: derived from Inbox when it is an *inbox.Service
	// (personal channels always, topic channels whose namespace keeps
	// history), else every channel.
	KeepsHistory func(channel string) bool
	Timeout      time.Duration // when the request names none; default 25 s
	TimeoutMax   time.Duration // cap on a request's timeout; default 60 s
	Linger       time.Duration // wait after the first live event for more; default 20 ms
	MaxBatch     int           // the linger ends once this many events are in; default 100
	MaxChannels  int           // channels per request; 0 = no limit here (the hub's subscription limit applies)
	OpTimeout    time.Duration // bound on the backend calls before the wait; default 10 s
	Logger       *slog.Logger
}

// Server answers long-poll requests.
type Server struct {
	opt      Options
	log      *slog.Logger
	waiting  atomic.Int64
	draining atomic.Bool
}

// New makes the handler.
func New(opt Options) *Server {
	if opt.TimeoutMax <= 0 {
		opt.TimeoutMax = DefaultTimeoutMax
	}
	if opt.Timeout <= 0 {
		opt.Timeout = DefaultTimeout
	}
	if opt.Linger <= 0 {
		opt.Linger = DefaultLinger
	}
	if opt.MaxBatch <= 0 {
		opt.MaxBatch = DefaultMaxBatch
	}
	if opt.OpTimeout <= 0 {
		opt.OpTimeout = DefaultOpTimeout
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.KeepsHistory == nil {
		opt.KeepsHistory = func(string) bool { return true }
		if svc, ok := opt.Inbox.(*inbox.Service); ok {
			opt.KeepsHistory = func(ch string) bool {
				return strings.HasPrefix(ch, tidings.PersonalPrefix) || (svc.History != nil && svc.History.Keeps(ch))
			}
		}
	}
	return &Server{opt: opt, log: opt.Logger}
}

// Count is the number of requests waiting now.
func (s *Server) Count() int64 { return s.waiting.Load() }

// Drain answers every waiting request at once (with what it has) and
// refuses new ones with 503, so that a stopping node does not hold its
// clients until their timeouts.
func (s *Server) Drain() {
	s.draining.Store(true)
	s.opt.Hub.ForEach(func(c *hub.Conn) {
		if c.Kind == hub.KindJSON {
			s.opt.Hub.CloseConn(c, 1012, "service restart")
		}
	})
}

// chanState is one channel of a request.
type chanState struct {
	name  string
	given bool  // the client's cursor names this channel
	since int64 // the client's cursor; when !given, the newest cursor before the request listened
	max   int64 // highest seq answered
	// floor drops events whose seq is not above it: a live message that
	// reaches the hub after the previous answer already took it from the
	// replay. 0 after a gap notice, whose replay may restart numbering.
	floor int64
	gap   bool
	after int64 // with gap: where everything still kept was delivered
}

// cursor is where the next poll of this channel starts.
func (st *chanState) cursor() int64 {
	switch {
	case st.max > 0 && st.gap:
		return st.max // a gap may restart the numbering below since
	case st.gap:
		return st.after
	default:
		return max(st.since, st.max)
	}
}

// request is a parsed poll.
type request struct {
	id      tidings.Identity
	chans   []*chanState
	timeout time.Duration
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		s.writeError(w, tidings.Errorf(tidings.CodeUnavailable, "server is restarting; poll another node"))
		return
	}
	req, err := s.parse(r)
	if err != nil {
		s.writeError(w, err)
		return
	}
	events, err := s.poll(r.Context(), req)
	if err != nil {
		if r.Context().Err() == nil {
			s.writeError(w, err)
		}
		return
	}
	var b bytes.Buffer
	b.WriteString(`{"events":[`)
	for i, e := range events {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(e)
	}
	b.WriteString(`],"cursor":`)
	c, _ := json.Marshal(req.cursor())
	b.Write(c)
	b.WriteString("}\n")
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b.Bytes())
}

// cursor is the answer's cursor: a decimal seq for one channel, the opaque
// form for several.
func (req *request) cursor() string {
	if len(req.chans) == 1 {
		return strconv.FormatInt(req.chans[0].cursor(), 10)
	}
	m := make(map[string]int64, len(req.chans))
	for _, st := range req.chans {
		m[st.name] = st.cursor()
	}
	return encodeCursor(m)
}

// parse authenticates the request and reads its parameters.
func (s *Server) parse(r *http.Request) (*request, error) {
	tok := ""
	if s.opt.Token != nil {
		tok = s.opt.Token(r)
	}
	if tok == "" {
		return nil, tidings.Errorf(tidings.CodeNotAuthenticated, "user token required (query token, Authorization: Bearer or cookie)")
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.opt.OpTimeout)
	defer cancel()
	id, err := s.opt.Auth.Authenticate(ctx, tok)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	timeout, err := parseTimeout(q.Get("timeout"), s.opt.Timeout, s.opt.TimeoutMax)
	if err != nil {
		return nil, err
	}
	names := q["channel"]
	if len(names) == 0 {
		names = []string{tidings.UserAlias}
	}
	var chans []string
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if n == tidings.UserAlias {
			n = tidings.PersonalChannel(id.User)
		}
		if !seen[n] {
			seen[n] = true
			chans = append(chans, n)
		}
	}
	if s.opt.MaxChannels > 0 && len(chans) > s.opt.MaxChannels {
		return nil, tidings.Errorf(tidings.CodeTooManySubs, "at most %d channels per poll", s.opt.MaxChannels)
	}
	since, err := parseSince(q.Get("since"), chans)
	if err != nil {
		return nil, err
	}
	req := &request{id: id, timeout: timeout}
	for _, ch := range chans {
		if err := s.opt.Rules.Allow(ctx, id, ch); err != nil {
			return nil, err
		}
		seq, given := since[ch]
		req.chans = append(req.chans, &chanState{name: ch, given: given, since: seq, floor: seq})
	}
	return req, nil
}

// poll listens to the request's channels, waits, and returns the events
// to answer, in the order they were delivered.
func (s *Server) poll(ctx context.Context, req *request) ([][]byte, error) {
	h := s.opt.Hub
	col := newCollector()
	c := h.Attach(hub.KindJSON, col)
	s.waiting.Add(1)
	defer s.waiting.Add(-1)

	byName := make(map[string]*chanState, len(req.chans))
	for _, st := range req.chans {
		byName[st.name] = st
	}
	var events [][]byte
	kept := 0
	absorb := func(items [][]byte) {
		for _, b := range items {
			if e, ok := s.accept(b, byName); ok {
				events = append(events, e)
				kept++
			}
		}
	}

	immediate, err := s.listen(ctx, c, req)
	if err == nil && !immediate && req.timeout > 0 && !s.draining.Load() {
		s.wait(ctx, col, req.timeout, absorb, &kept)
	}

	// Leave the hub, then let its worker hand over everything it delivered
	// to this request before: the flush marker passes the same queue.
	h.Detach(c)
	if err != nil {
		col.finish()
		return nil, err
	}
	if ctx.Err() != nil {
		col.finish()
		return nil, ctx.Err()
	}
	h.Send(c, col.marker)
	t := time.NewTimer(flushWait)
	select {
	case <-col.flushed:
	case <-t.C:
		s.log.Warn("long-poll: hub did not flush in time", "user", req.id.User)
	case <-ctx.Done():
	}
	t.Stop()
	absorb(col.finish())
	return events, nil
}

// listen authenticates the hub connection and subscribes it to every
// channel, from its cursor. It reports whether something newer than a
// cursor exists, which answers the request at once.
func (s *Server) listen(ctx context.Context, c *hub.Conn, req *request) (immediate bool, err error) {
	h := s.opt.Hub
	// No end for the credential: it was checked for this request, and a
	// wait is short (see Hub.Sweep).
	if err := h.Authenticate(c, req.id.User, time.Time{}); err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.opt.OpTimeout)
	defer cancel()
	none := func() ([]*tidings.Message, error) { return nil, nil }
	for _, st := range req.chans {
		load := none
		switch {
		case !st.given:
			// From now: the newest cursor, read before listening, so that
			// whatever comes after it is either answered now or replayed
			// by the next poll.
			cur, err := s.opt.Inbox.Cursor(ctx, st.name)
			if err != nil {
				return false, err
			}
			st.since = cur
		case st.since == 0 && !s.opt.KeepsHistory(st.name):
			// Nothing is ever kept: "from the oldest kept" is from now,
			// and no gap notice on every poll.
		default:
			load = func() ([]*tidings.Message, error) {
				ms, err := s.opt.Inbox.Replay(ctx, st.name, st.since)
				for _, m := range ms {
					if m.Event == history.GapEvent && m.Seq == 0 && m.ID == "" {
						st.gap, st.floor = true, 0
						st.after = gapAfter(m.Data)
					}
				}
				if len(ms) > 0 {
					immediate = true
				}
				return ms, err
			}
		}
		// The poll keeps its own floor (it knows about gaps across polls),
		// so the hub is given none.
		if _, err := h.Resume(c, st.name, 0, nil, load); err != nil {
			return false, err
		}
	}
	return immediate, nil
}

// wait collects live events until the timeout, the end of a short linger
// after the first one, a full batch, the client leaving, or a drain.
func (s *Server) wait(ctx context.Context, col *collector, timeout time.Duration, absorb func([][]byte), kept *int) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var linger <-chan time.Time
	for {
		select {
		case <-col.signal:
			items, closing := col.take()
			absorb(items)
			if closing || *kept >= s.opt.MaxBatch {
				return
			}
			if *kept > 0 && linger == nil {
				t := time.NewTimer(s.opt.Linger)
				defer t.Stop()
				linger = t.C
			}
		case <-linger:
			return
		case <-deadline.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// eventHead is what the cursor needs from a server event.
type eventHead struct {
	Channel string `json:"channel"`
	ID      string `json:"id"`
}

// accept reads one delivered event: it moves its channel's cursor, or is
// dropped as already answered by an earlier poll.
func (s *Server) accept(b []byte, byName map[string]*chanState) ([]byte, bool) {
	var e eventHead
	if err := json.Unmarshal(b, &e); err != nil {
		s.log.Error("long-poll: event is not JSON", "err", err)
		return nil, false
	}
	st := byName[e.Channel]
	seq, ok := tidings.ParseSeq(e.ID)
	if st == nil || !ok || seq == 0 {
		return b, true // no cursor: delivered, moves nothing
	}
	if seq <= st.floor {
		return nil, false
	}
	st.max = max(st.max, seq)
	return b, true
}

// gapAfter is where a client stands after a gap notice with nothing after
// it: just before the oldest cursor still kept (0 when none is named).
func gapAfter(data json.RawMessage) int64 {
	var g struct {
		First string `json:"first"`
	}
	_ = json.Unmarshal(data, &g)
	if first, ok := tidings.ParseSeq(g.First); ok && first > 0 {
		return first - 1
	}
	return 0
}

func (s *Server) writeError(w http.ResponseWriter, err error) {
	e := tidings.ErrorOf(err)
	if e.Code == tidings.CodeInternal || (e.Code == tidings.CodeUnavailable && e.Err != nil) {
		s.log.Error("long-poll failed", "code", int(e.Code), "msg", e.Msg, "err", e.Err)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	if e.Code == tidings.CodeNotAuthenticated {
		h.Set("WWW-Authenticate", `Bearer realm="tidings"`)
	}
	w.WriteHeader(e.Code.HTTPStatus())
	_ = json.NewEncoder(w).Encode(e)
}
