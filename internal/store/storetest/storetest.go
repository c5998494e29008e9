// Package storetest is the conformance suite for tidings.Store: every
// implementation runs Run from its own tests, so the contract written in
// store.go is checked once, the same way, for all of them.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidings/tidings"
)

// Run runs the suite. open must return a new, empty store for each call
// and arrange its cleanup (e.g. t.Cleanup(func() { s.Close() })); the
// suite may also close it itself, so Close must be idempotent.
func Run(t *testing.T, open func(t testing.TB) tidings.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s tidings.Store)
	}{
		{"AppendSeqPerUser", testAppendSeqPerUser},
		{"AppendKeepsFields", testAppendKeepsFields},
		{"AppendRejectsEmptyID", testAppendRejectsEmptyID},
		{"CreatedAt", testCreatedAt},
		{"Data", testData},
		{"Idempotency", testIdempotency},
		{"IdempotencyInBatch", testIdempotencyInBatch},
		{"IdempotencyConcurrent", testIdempotencyConcurrent},
		{"SeqNotReusedAfterDelete", testSeqNotReused},
		{"ListPaging", testListPaging},
		{"ListLimits", testListLimits},
		{"ListUnreadOnly", testListUnreadOnly},
		{"ListEmpty", testListEmpty},
		{"Since", testSince},
		{"MarkRead", testMarkRead},
		{"MarkReadAll", testMarkReadAll},
		{"Delete", testDelete},
		{"Expired", testExpired},
		{"UnreadCount", testUnreadCount},
		{"ConcurrentAppend", testConcurrentAppend},
		{"Ping", testPing},
		{"Close", testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

// idSeq makes ids unique within the process; the suite assigns ids as a
// publisher would (the store keeps them).
var idSeq atomic.Int64

func newID() string { return fmt.Sprintf("st-%010d", idSeq.Add(1)) }

// note is a minimal valid notification for user.
func note(user, title string) tidings.NewNotification {
	return tidings.NewNotification{ID: newID(), User: user, Type: "message", Title: title}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func mustAppend(t testing.TB, s tidings.Store, batch ...tidings.NewNotification) []tidings.Notification {
	t.Helper()
	got, err := s.Append(ctxT(t), batch)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	if len(got) != len(batch) {
		t.Fatalf("Append returned %d notifications for %d", len(got), len(batch))
	}
	return got
}

// appendN appends n notifications for user, one call each.
func appendN(t testing.TB, s tidings.Store, user string, n int) []tidings.Notification {
	t.Helper()
	var out []tidings.Notification
	for i := range n {
		out = append(out, mustAppend(t, s, note(user, fmt.Sprintf("%s #%d", user, i+1)))...)
	}
	return out
}

func mustList(t testing.TB, s tidings.Store, user string, q tidings.ListQuery) tidings.Page {
	t.Helper()
	p, err := s.List(ctxT(t), user, q)
	if err != nil {
		t.Fatalf("List(%q, %+v): %v", user, q, err)
	}
	return p
}

func mustSince(t testing.TB, s tidings.Store, user string, after int64, limit int) []tidings.Notification {
	t.Helper()
	got, err := s.Since(ctxT(t), user, after, limit)
	if err != nil {
		t.Fatalf("Since(%q, %d, %d): %v", user, after, limit, err)
	}
	return got
}

func mustUnread(t testing.TB, s tidings.Store, user string) int {
	t.Helper()
	n, err := s.Unread(ctxT(t), user)
	if err != nil {
		t.Fatalf("Unread(%q): %v", user, err)
	}
	return n
}

func seqs(items []tidings.Notification) []int64 {
	out := make([]int64, len(items))
	for i, n := range items {
		out[i] = n.Seq
	}
	return out
}

func ids(items []tidings.Notification) []string {
	out := make([]string, len(items))
	for i, n := range items {
		out[i] = n.ID
	}
	return out
}

// seqRange counts from lo to hi, up or down, both included.
func seqRange(lo, hi int64) []int64 {
	var out []int64
	if lo <= hi {
		for s := lo; s <= hi; s++ {
			out = append(out, s)
		}
	} else {
		for s := lo; s >= hi; s-- {
			out = append(out, s)
		}
	}
	return out
}

func wantSeqs(t testing.TB, what string, got []tidings.Notification, want []int64) {
	t.Helper()
	if g := seqs(got); !slices.Equal(g, want) {
		t.Fatalf("%s: seqs %v, want %v", what, g, want)
	}
}

// near reports whether a and b are within a millisecond: stores may keep
// times at millisecond precision.
func near(a, b time.Time) bool {
	d := a.Sub(b)
	return d > -time.Millisecond && d < time.Millisecond
}

// sameNotification compares two reads of the same stored notification
// exactly: a store must hand back what it stored, every time.
func sameNotification(t testing.TB, what string, got, want tidings.Notification) {
	t.Helper()
	if got.ID != want.ID || got.Seq != want.Seq || got.User != want.User || got.Type != want.Type ||
		got.Title != want.Title || got.Body != want.Body || got.URL != want.URL || got.Group != want.Group ||
		string(got.Data) != string(want.Data) || !got.CreatedAt.Equal(want.CreatedAt) ||
		!sameTimePtr(got.ReadAt, want.ReadAt) || !sameTimePtr(got.ExpiresAt, want.ExpiresAt) {
		t.Fatalf("%s:\n got  %+v\n want %+v", what, got, want)
	}
}

func sameTimePtr(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Equal(*b)
}

func testAppendSeqPerUser(t *testing.T, s tidings.Store) {
	// One call, users interleaved: order kept, seqs counted per user.
	batch := []tidings.NewNotification{
		note("alice", "a1"), note("bob", "b1"), note("alice", "a2"),
		note("alice", "a3"), note("bob", "b2"),
	}
	got := mustAppend(t, s, batch...)
	wantSeq := []int64{1, 1, 2, 3, 2}
	for i, n := range got {
		if n.ID != batch[i].ID || n.User != batch[i].User || n.Title != batch[i].Title {
			t.Fatalf("item %d: got %s/%s/%q, want %s/%s/%q (order not kept?)",
				i, n.ID, n.User, n.Title, batch[i].ID, batch[i].User, batch[i].Title)
		}
		if n.Seq != wantSeq[i] {
			t.Fatalf("item %d (%s): seq %d, want %d", i, n.User, n.Seq, wantSeq[i])
		}
	}
	// Later calls continue each user's sequence.
	if n := mustAppend(t, s, note("alice", "a4"))[0]; n.Seq != 4 {
		t.Fatalf("alice's next seq %d, want 4", n.Seq)
	}
	if n := mustAppend(t, s, note("carol", "c1"))[0]; n.Seq != 1 {
		t.Fatalf("new user's first seq %d, want 1", n.Seq)
	}
	wantSeqs(t, "alice's inbox", mustList(t, s, "alice", tidings.ListQuery{}).Items, []int64{4, 3, 2, 1})
	wantSeqs(t, "bob's inbox", mustList(t, s, "bob", tidings.ListQuery{}).Items, []int64{2, 1})

	if got, err := s.Append(ctxT(t), nil); err != nil || len(got) != 0 {
		t.Fatalf("Append(nil) = %v, %v; want nothing, nil", got, err)
	}
}

func testAppendKeepsFields(t *testing.T, s tidings.Store) {
	created := time.Date(2024, 5, 6, 7, 8, 9, 123_000_000, time.UTC)
	expires := time.Now().Add(24 * time.Hour).Truncate(time.Millisecond)
	in := tidings.NewNotification{
		ID: newID(), User: "user@example.com", Type: "comment", Title: "New comment ✓",
		Body: "line 1\nline 2 \"quoted\" \x01", URL: "https://example.com/p/1?x=1&y=2",
		Data: json.RawMessage(`{"post":1}`), Group: "post:1", CreatedAt: created, ExpiresAt: &expires,
	}
	got := mustAppend(t, s, in)[0]
	want := tidings.Notification{
		ID: in.ID, Seq: 1, User: in.User, Type: in.Type, Title: in.Title, Body: in.Body, URL: in.URL,
		Data: in.Data, Group: in.Group, CreatedAt: created, ExpiresAt: &expires,
	}
	sameNotification(t, "Append result", got, want)
	sameNotification(t, "List item", mustList(t, s, in.User, tidings.ListQuery{}).Items[0], got)
	sameNotification(t, "Since item", mustSince(t, s, in.User, 0, 10)[0], got)
}

func testAppendRejectsEmptyID(t *testing.T, s tidings.Store) {
	bad := note("alice", "no id")
	bad.ID = ""
	if _, err := s.Append(ctxT(t), []tidings.NewNotification{note("alice", "fine"), bad}); err == nil {
		t.Fatal("Append with an empty id succeeded")
	}
	// All or nothing: the valid one of that call is not stored either.
	if p := mustList(t, s, "alice", tidings.ListQuery{}); len(p.Items) != 0 {
		t.Fatalf("after a rejected call, inbox has %d items", len(p.Items))
	}
	if n := mustAppend(t, s, note("alice", "next"))[0]; n.Seq != 1 {
		t.Fatalf("seq after a rejected call %d, want 1", n.Seq)
	}
}

func testCreatedAt(t *testing.T, s tidings.Store) {
	given := time.Date(2023, 1, 2, 3, 4, 5, 678_901_234, time.FixedZone("X", 3600))
	n := note("alice", "given")
	n.CreatedAt = given
	got := mustAppend(t, s, n)[0]
	if !near(got.CreatedAt, given) {
		t.Fatalf("CreatedAt %v, want %v", got.CreatedAt, given)
	}
	before := time.Now()
	got2 := mustAppend(t, s, note("alice", "zero"))[0]
	after := time.Now()
	if got2.CreatedAt.Before(before.Add(-time.Millisecond)) || got2.CreatedAt.After(after.Add(time.Millisecond)) {
		t.Fatalf("zero CreatedAt became %v, want between %v and %v", got2.CreatedAt, before, after)
	}
	items := mustList(t, s, "alice", tidings.ListQuery{}).Items
	sameNotification(t, "listed (given)", items[1], got)
	sameNotification(t, "listed (zero)", items[0], got2)
}

func testData(t *testing.T, s tidings.Store) {
	cases := []string{
		"", // nil: stored as JSON null
		`{"a": [1, 2.50, {"b": "c"}],  "d":null}`, // spacing and number text kept
		`"text"`, `42`, `[]`, `{}`, `true`, `null`,
		`{"unicode":"é\u00e9 ✓","big":12345678901234567890}`,
	}
	var batch []tidings.NewNotification
	for i, c := range cases {
		n := note("alice", fmt.Sprint("data ", i))
		if c != "" {
			n.Data = json.RawMessage(c)
		}
		batch = append(batch, n)
	}
	stored := mustAppend(t, s, batch...)
	listed := mustSince(t, s, "alice", 0, 100)
	for i, c := range cases {
		for what, n := range map[string]tidings.Notification{"Append": stored[i], "Since": listed[i]} {
			got := string(n.Data)
			if c == "" {
				if got != "" && got != "null" {
					t.Errorf("%s: nil data came back as %q", what, got)
				}
				continue
			}
			if got != c {
				t.Errorf("%s: data %q came back as %q", what, c, got)
			}
		}
		// Whatever comes back must encode: the edges send it as JSON.
		if _, err := json.Marshal(listed[i]); err != nil {
			t.Errorf("stored notification %d does not encode: %v", i, err)
		}
	}
}

func testIdempotency(t *testing.T, s tidings.Store) {
	first := note("alice", "first")
	first.IdempotencyKey = "k1"
	a := mustAppend(t, s, first)[0]

	retry := note("alice", "retry") // a new id, as a retrying publisher makes
	retry.IdempotencyKey = "k1"
	b := mustAppend(t, s, retry)[0]
	sameNotification(t, "retry with the same key", b, a)

	// Same key, other user: a different notification.
	other := note("bob", "bob's")
	other.IdempotencyKey = "k1"
	if c := mustAppend(t, s, other)[0]; c.ID != other.ID || c.Seq != 1 {
		t.Fatalf("bob with alice's key got %s seq %d, want %s seq 1", c.ID, c.Seq, other.ID)
	}
	// No key: never deduplicated.
	appendN(t, s, "alice", 2)
	p := mustList(t, s, "alice", tidings.ListQuery{})
	wantSeqs(t, "alice's inbox", p.Items, []int64{3, 2, 1})
	if p.LastSeq != 3 {
		t.Fatalf("LastSeq %d, want 3 (a deduplicated append must not use a seq)", p.LastSeq)
	}
	// A retry after the first was read returns it as stored now.
	if _, _, err := s.MarkRead(ctxT(t), "alice", []string{a.ID}, false); err != nil {
		t.Fatal(err)
	}
	retry2 := note("alice", "retry 2")
	retry2.IdempotencyKey = "k1"
	if c := mustAppend(t, s, retry2)[0]; c.ID != a.ID || c.ReadAt == nil {
		t.Fatalf("retry after read: %s read_at %v, want %s with read_at set", c.ID, c.ReadAt, a.ID)
	}
}

func testIdempotencyInBatch(t *testing.T, s tidings.Store) {
	x, y, z := note("alice", "x"), note("alice", "y"), note("bob", "z")
	x.IdempotencyKey, y.IdempotencyKey, z.IdempotencyKey = "same", "same", "same"
	got := mustAppend(t, s, x, y, z)
	if got[0].ID != x.ID || got[0].Seq != 1 {
		t.Fatalf("first of batch: %s seq %d", got[0].ID, got[0].Seq)
	}
	sameNotification(t, "duplicate within one batch", got[1], got[0])
	if got[2].ID != z.ID || got[2].Seq != 1 {
		t.Fatalf("other user's item: %s seq %d", got[2].ID, got[2].Seq)
	}
	if n := mustAppend(t, s, note("alice", "after"))[0]; n.Seq != 2 {
		t.Fatalf("seq after a batch with a duplicate %d, want 2", n.Seq)
	}
}

func testIdempotencyConcurrent(t *testing.T, s tidings.Store) {
	const callers = 16
	results := make([]tidings.Notification, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := note("alice", fmt.Sprint("caller ", i))
			n.IdempotencyKey = "race"
			got, err := s.Append(context.Background(), []tidings.NewNotification{n})
			if err != nil {
				t.Errorf("caller %d: %v", i, err)
				return
			}
			results[i] = got[0]
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for i := 1; i < callers; i++ {
		sameNotification(t, fmt.Sprint("caller ", i), results[i], results[0])
	}
	if p := mustList(t, s, "alice", tidings.ListQuery{}); len(p.Items) != 1 || p.LastSeq != 1 {
		t.Fatalf("concurrent duplicates stored %d items, LastSeq %d; want 1, 1", len(p.Items), p.LastSeq)
	}
}

func testSeqNotReused(t *testing.T, s tidings.Store) {
	got := appendN(t, s, "alice", 3)
	if err := s.Delete(ctxT(t), "alice", got[2].ID); err != nil {
		t.Fatalf("Delete newest: %v", err)
	}
	if p := mustList(t, s, "alice", tidings.ListQuery{}); p.LastSeq != 3 {
		t.Fatalf("LastSeq after deleting the newest %d, want 3", p.LastSeq)
	}
	if n := mustAppend(t, s, note("alice", "next"))[0]; n.Seq != 4 {
		t.Fatalf("seq after deleting the newest %d, want 4", n.Seq)
	}
	// Delete everything: still no reuse.
	for _, n := range mustSince(t, s, "alice", 0, 100) {
		if err := s.Delete(ctxT(t), "alice", n.ID); err != nil {
			t.Fatal(err)
		}
	}
	if n := mustAppend(t, s, note("alice", "after all deleted"))[0]; n.Seq != 5 {
		t.Fatalf("seq after deleting all %d, want 5", n.Seq)
	}
}

func testListPaging(t *testing.T, s tidings.Store) {
	appendN(t, s, "alice", 7)
	appendN(t, s, "bob", 2)
	p := mustList(t, s, "alice", tidings.ListQuery{Limit: 3})
	wantSeqs(t, "page 1", p.Items, []int64{7, 6, 5})
	if p.Next != 5 || p.LastSeq != 7 || p.Unread != 7 {
		t.Fatalf("page 1: next %d last %d unread %d; want 5 7 7", p.Next, p.LastSeq, p.Unread)
	}
	p = mustList(t, s, "alice", tidings.ListQuery{Limit: 3, BeforeSeq: p.Next})
	wantSeqs(t, "page 2", p.Items, []int64{4, 3, 2})
	if p.Next != 2 || p.LastSeq != 7 {
		t.Fatalf("page 2: next %d last %d; want 2 7", p.Next, p.LastSeq)
	}
	p = mustList(t, s, "alice", tidings.ListQuery{Limit: 3, BeforeSeq: p.Next})
	wantSeqs(t, "page 3", p.Items, []int64{1})
	if p.Next != 0 {
		t.Fatalf("last page: next %d, want 0", p.Next)
	}
	// A page that ends exactly at the oldest item is the last one.
	p = mustList(t, s, "alice", tidings.ListQuery{Limit: 3, BeforeSeq: 4})
	wantSeqs(t, "exact last page", p.Items, []int64{3, 2, 1})
	if p.Next != 0 {
		t.Fatalf("exact last page: next %d, want 0", p.Next)
	}
	// BeforeSeq past the newest is the same as from the newest.
	wantSeqs(t, "before 100", mustList(t, s, "alice", tidings.ListQuery{Limit: 2, BeforeSeq: 100}).Items, []int64{7, 6})
	// Paging skips deleted items and still ends.
	if err := s.Delete(ctxT(t), "alice", mustSince(t, s, "alice", 4, 1)[0].ID); err != nil {
		t.Fatal(err)
	}
	p = mustList(t, s, "alice", tidings.ListQuery{Limit: 3, BeforeSeq: 7})
	wantSeqs(t, "page without seq 5", p.Items, []int64{6, 4, 3})
	if p.Next != 3 {
		t.Fatalf("page without seq 5: next %d, want 3", p.Next)
	}
}

func testListLimits(t *testing.T, s tidings.Store) {
	batch := make([]tidings.NewNotification, 501)
	for i := range batch {
		batch[i] = note("alice", fmt.Sprint("n", i))
	}
	mustAppend(t, s, batch...) // one call: one commit
	p := mustList(t, s, "alice", tidings.ListQuery{})
	wantSeqs(t, "default limit", p.Items, seqRange(501, 452))
	if p.Next != 452 {
		t.Fatalf("default limit: next %d, want 452", p.Next)
	}
	p = mustList(t, s, "alice", tidings.ListQuery{Limit: 10000})
	wantSeqs(t, "limit over the maximum", p.Items, seqRange(501, 2))
	if p.Next != 2 {
		t.Fatalf("maximum limit: next %d, want 2", p.Next)
	}
	p = mustList(t, s, "alice", tidings.ListQuery{Limit: 1})
	wantSeqs(t, "limit 1", p.Items, []int64{501})
	if p.Next != 501 {
		t.Fatalf("limit 1: next %d, want 501", p.Next)
	}
}

func testListUnreadOnly(t *testing.T, s tidings.Store) {
	got := appendN(t, s, "alice", 6)
	// Read 2, 4 and 5.
	if _, unread, err := s.MarkRead(ctxT(t), "alice", []string{got[1].ID, got[3].ID, got[4].ID}, false); err != nil || unread != 3 {
		t.Fatalf("MarkRead: unread %d, %v; want 3", unread, err)
	}
	p := mustList(t, s, "alice", tidings.ListQuery{UnreadOnly: true, Limit: 2})
	wantSeqs(t, "unread page 1", p.Items, []int64{6, 3})
	if p.Next != 3 || p.Unread != 3 || p.LastSeq != 6 {
		t.Fatalf("unread page 1: next %d unread %d last %d; want 3 3 6", p.Next, p.Unread, p.LastSeq)
	}
	p = mustList(t, s, "alice", tidings.ListQuery{UnreadOnly: true, Limit: 2, BeforeSeq: p.Next})
	wantSeqs(t, "unread page 2", p.Items, []int64{1})
	if p.Next != 0 {
		t.Fatalf("unread page 2: next %d, want 0", p.Next)
	}
	for _, n := range p.Items {
		if n.ReadAt != nil {
			t.Fatalf("unread-only page has read item %d", n.Seq)
		}
	}
	// The full list has both, read ones with ReadAt set.
	p = mustList(t, s, "alice", tidings.ListQuery{})
	wantSeqs(t, "full list", p.Items, []int64{6, 5, 4, 3, 2, 1})
	for _, n := range p.Items {
		if read := n.Seq == 2 || n.Seq == 4 || n.Seq == 5; read != (n.ReadAt != nil) {
			t.Fatalf("item %d: read_at %v", n.Seq, n.ReadAt)
		}
	}
}

func testListEmpty(t *testing.T, s tidings.Store) {
	p := mustList(t, s, "nobody", tidings.ListQuery{})
	if len(p.Items) != 0 || p.Next != 0 || p.Unread != 0 || p.LastSeq != 0 {
		t.Fatalf("empty inbox: %+v", p)
	}
	if got := mustSince(t, s, "nobody", 0, 10); len(got) != 0 {
		t.Fatalf("Since on an empty inbox: %d items", len(got))
	}
	if n := mustUnread(t, s, "nobody"); n != 0 {
		t.Fatalf("Unread on an empty inbox: %d", n)
	}
}

func testSince(t *testing.T, s tidings.Store) {
	got := appendN(t, s, "alice", 5)
	appendN(t, s, "bob", 3)
	wantSeqs(t, "since 0 limit 2", mustSince(t, s, "alice", 0, 2), []int64{1, 2})
	wantSeqs(t, "since 2", mustSince(t, s, "alice", 2, 100), []int64{3, 4, 5})
	wantSeqs(t, "since 5", mustSince(t, s, "alice", 5, 100), nil)
	wantSeqs(t, "since past the end", mustSince(t, s, "alice", 99, 100), nil)
	if err := s.Delete(ctxT(t), "alice", got[2].ID); err != nil {
		t.Fatal(err)
	}
	all := mustSince(t, s, "alice", 0, 100)
	wantSeqs(t, "since 0 after deleting 3", all, []int64{1, 2, 4, 5})
	if !slices.Equal(ids(all), []string{got[0].ID, got[1].ID, got[3].ID, got[4].ID}) {
		t.Fatalf("since: ids %v", ids(all))
	}
	for i, n := range all {
		if n.User != "alice" {
			t.Fatalf("since item %d belongs to %q", i, n.User)
		}
	}
}

func testMarkRead(t *testing.T, s tidings.Store) {
	got := appendN(t, s, "alice", 4)
	bobs := appendN(t, s, "bob", 1)
	before := time.Now()
	changed, unread, err := s.MarkRead(ctxT(t), "alice",
		[]string{got[2].ID, "no-such-id", bobs[0].ID, got[0].ID}, false)
	after := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(changed)
	want := []string{got[0].ID, got[2].ID}
	slices.Sort(want)
	if !slices.Equal(changed, want) || unread != 2 {
		t.Fatalf("MarkRead: changed %v unread %d; want %v 2", changed, unread, want)
	}
	// Marking again changes nothing.
	changed, unread, err = s.MarkRead(ctxT(t), "alice", []string{got[0].ID, got[2].ID}, false)
	if err != nil || len(changed) != 0 || unread != 2 {
		t.Fatalf("MarkRead again: changed %v unread %d err %v; want none 2", changed, unread, err)
	}
	if n := mustUnread(t, s, "alice"); n != 2 {
		t.Fatalf("Unread %d, want 2", n)
	}
	// Bob's id was ignored.
	if n := mustUnread(t, s, "bob"); n != 1 {
		t.Fatalf("bob's unread %d, want 1 (alice marked bob's id)", n)
	}
	for _, n := range mustSince(t, s, "alice", 0, 10) {
		read := n.ID == got[0].ID || n.ID == got[2].ID
		if read != (n.ReadAt != nil) {
			t.Fatalf("item %d: read_at %v", n.Seq, n.ReadAt)
		}
		if read && (n.ReadAt.Before(before.Add(-time.Millisecond)) || n.ReadAt.After(after.Add(time.Millisecond))) {
			t.Fatalf("item %d: read_at %v, want between %v and %v", n.Seq, n.ReadAt, before, after)
		}
	}
	// Only other users' or unknown ids: not found, nothing changes.
	if _, _, err := s.MarkRead(ctxT(t), "alice", []string{bobs[0].ID, "no-such-id"}, false); !errors.Is(err, tidings.ErrNotFound) {
		t.Fatalf("MarkRead of none of alice's ids: %v, want ErrNotFound", err)
	}
	if n := mustUnread(t, s, "bob"); n != 1 {
		t.Fatalf("bob's unread %d, want 1", n)
	}
	// No ids, not all: nothing changes.
	if changed, unread, err := s.MarkRead(ctxT(t), "alice", nil, false); err != nil || len(changed) != 0 || unread != 2 {
		t.Fatalf("MarkRead(nil): changed %v unread %d err %v", changed, unread, err)
	}
}

func testMarkReadAll(t *testing.T, s tidings.Store) {
	got := appendN(t, s, "alice", 3)
	appendN(t, s, "bob", 2)
	if _, _, err := s.MarkRead(ctxT(t), "alice", []string{got[0].ID}, false); err != nil {
		t.Fatal(err)
	}
	firstRead := mustSince(t, s, "alice", 0, 1)[0].ReadAt
	changed, unread, err := s.MarkRead(ctxT(t), "alice", nil, true)
	if err != nil || changed != nil || unread != 0 {
		t.Fatalf("MarkRead all: changed %v unread %d err %v; want nil 0 nil", changed, unread, err)
	}
	for _, n := range mustSince(t, s, "alice", 0, 10) {
		if n.ReadAt == nil {
			t.Fatalf("item %d unread after MarkRead all", n.Seq)
		}
	}
	if again := mustSince(t, s, "alice", 0, 1)[0].ReadAt; !again.Equal(*firstRead) {
		t.Fatalf("MarkRead all moved an earlier read_at from %v to %v", firstRead, again)
	}
	if n := mustUnread(t, s, "bob"); n != 2 {
		t.Fatalf("bob's unread %d after alice read all, want 2", n)
	}
	if p := mustList(t, s, "alice", tidings.ListQuery{UnreadOnly: true}); len(p.Items) != 0 || p.Unread != 0 {
		t.Fatalf("unread-only after read all: %d items, unread %d", len(p.Items), p.Unread)
	}
	// New notifications after read all are unread, and read all reads them.
	appendN(t, s, "alice", 2)
	if n, p := mustUnread(t, s, "alice"), mustList(t, s, "alice", tidings.ListQuery{}); n != 2 || p.Unread != 2 {
		t.Fatalf("after read all and 2 new: Unread %d, List unread %d; want 2", n, p.Unread)
	}
	if _, unread, err := s.MarkRead(ctxT(t), "alice", nil, true); err != nil || unread != 0 {
		t.Fatalf("MarkRead all again: unread %d err %v; want 0", unread, err)
	}
	// Read all with nothing unread, and for a user with no notifications.
	if _, unread, err := s.MarkRead(ctxT(t), "alice", nil, true); err != nil || unread != 0 {
		t.Fatalf("MarkRead all with nothing unread: unread %d err %v; want 0", unread, err)
	}
	if _, unread, err := s.MarkRead(ctxT(t), "nobody", nil, true); err != nil || unread != 0 {
		t.Fatalf("MarkRead all for a user with no notifications: unread %d err %v; want 0", unread, err)
	}
}

func testDelete(t *testing.T, s tidings.Store) {
	got := appendN(t, s, "alice", 3)
	bobs := appendN(t, s, "bob", 1)
	if err := s.Delete(ctxT(t), "alice", got[1].ID); err != nil {
		t.Fatalf("Delete own: %v", err)
	}
	wantSeqs(t, "after delete", mustList(t, s, "alice", tidings.ListQuery{}).Items, []int64{3, 1})
	if n := mustUnread(t, s, "alice"); n != 2 {
		t.Fatalf("Unread after delete %d, want 2", n)
	}
	for what, id := range map[string]string{"deleted twice": got[1].ID, "unknown": "no-such-id", "bob's": bobs[0].ID} {
		err := s.Delete(ctxT(t), "alice", id)
		if !errors.Is(err, tidings.ErrNotFound) {
			t.Fatalf("Delete %s id: %v, want ErrNotFound", what, err)
		}
	}
	if p := mustList(t, s, "bob", tidings.ListQuery{}); len(p.Items) != 1 {
		t.Fatalf("alice deleted bob's notification")
	}
	// Deleting a read notification leaves the unread count alone.
	if _, _, err := s.MarkRead(ctxT(t), "alice", []string{got[0].ID}, false); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctxT(t), "alice", got[0].ID); err != nil {
		t.Fatal(err)
	}
	if n := mustUnread(t, s, "alice"); n != 1 {
		t.Fatalf("Unread after deleting a read notification %d, want 1", n)
	}
}

// testUnreadCount follows the unread count through every kind of change,
// and checks that Unread, List and MarkRead always agree on it.
func testUnreadCount(t *testing.T, s tidings.Store) {
	past := time.Now().Add(-time.Hour)
	future := time.Now().Add(time.Hour)
	check := func(what string, want int) {
		t.Helper()
		if n := mustUnread(t, s, "alice"); n != want {
			t.Fatalf("%s: Unread %d, want %d", what, n, want)
		}
		if p := mustList(t, s, "alice", tidings.ListQuery{Limit: 1}); p.Unread != want {
			t.Fatalf("%s: List unread %d, want %d", what, p.Unread, want)
		}
		if _, n, err := s.MarkRead(ctxT(t), "alice", nil, false); err != nil || n != want {
			t.Fatalf("%s: MarkRead of nothing: unread %d err %v; want %d", what, n, err, want)
		}
	}
	check("no notifications", 0)
	expiring := note("alice", "expires later")
	expiring.ExpiresAt = &future
	got := mustAppend(t, s, note("alice", "1"), note("alice", "2"), expiring, note("bob", "bob's"))
	check("3 new", 3)
	gone := note("alice", "expired when sent")
	gone.ExpiresAt = &past
	mustAppend(t, s, gone)
	check("an expired one sent", 3)
	keyed := note("alice", "keyed")
	keyed.IdempotencyKey = "once"
	mustAppend(t, s, keyed)
	retry := note("alice", "keyed again")
	retry.IdempotencyKey = "once"
	mustAppend(t, s, retry)
	check("one with a key, sent twice", 4)
	if _, n, err := s.MarkRead(ctxT(t), "alice", []string{got[0].ID, got[0].ID, gone.ID}, false); err != nil || n != 3 {
		t.Fatalf("MarkRead of one (twice) and an expired one: unread %d err %v; want 3", n, err)
	}
	check("one read", 3)
	if err := s.Delete(ctxT(t), "alice", got[1].ID); err != nil {
		t.Fatal(err)
	}
	check("an unread one deleted", 2)
	if err := s.Delete(ctxT(t), "alice", expiring.ID); err != nil {
		t.Fatal(err)
	}
	check("an unread one that expires later deleted", 1)
	if err := s.Delete(ctxT(t), "alice", gone.ID); !errors.Is(err, tidings.ErrNotFound) {
		t.Fatalf("Delete of an expired notification: %v, want ErrNotFound", err)
	}
	check("delete of an expired one refused", 1)
	if _, n, err := s.MarkRead(ctxT(t), "alice", nil, true); err != nil || n != 0 {
		t.Fatalf("MarkRead all: unread %d err %v; want 0", n, err)
	}
	check("all read", 0)
	mustAppend(t, s, note("alice", "after all read"))
	check("one new after all read", 1)
	if n := mustUnread(t, s, "bob"); n != 1 {
		t.Fatalf("bob's Unread %d after alice's changes, want 1", n)
	}
}

func testExpired(t *testing.T, s tidings.Store) {
	past := time.Now().Add(-time.Hour)
	future := time.Now().Add(time.Hour)
	live1 := note("alice", "live 1")
	gone := note("alice", "expired")
	gone.ExpiresAt = &past
	live2 := note("alice", "live 2")
	live2.ExpiresAt = &future
	goneNewest := note("alice", "expired newest")
	goneNewest.ExpiresAt = &past
	// Append returns every stored item, expired or not.
	wantSeqs(t, "append", mustAppend(t, s, live1, gone, live2, goneNewest), []int64{1, 2, 3, 4})

	p := mustList(t, s, "alice", tidings.ListQuery{})
	wantSeqs(t, "list", p.Items, []int64{3, 1})
	if p.Unread != 2 || p.LastSeq != 4 {
		t.Fatalf("list: unread %d last %d; want 2 4 (LastSeq counts expired items)", p.Unread, p.LastSeq)
	}
	wantSeqs(t, "unread only", mustList(t, s, "alice", tidings.ListQuery{UnreadOnly: true}).Items, []int64{3, 1})
	wantSeqs(t, "since", mustSince(t, s, "alice", 0, 10), []int64{1, 3})
	if n := mustUnread(t, s, "alice"); n != 2 {
		t.Fatalf("Unread %d, want 2", n)
	}
	p = mustList(t, s, "alice", tidings.ListQuery{Limit: 1, BeforeSeq: 3})
	wantSeqs(t, "page over an expired item", p.Items, []int64{1})
	if p.Next != 0 {
		t.Fatalf("page over an expired item: next %d, want 0", p.Next)
	}
	changed, unread, err := s.MarkRead(ctxT(t), "alice", []string{gone.ID, live1.ID}, false)
	if err != nil || unread != 1 || !slices.Equal(changed, []string{live1.ID}) {
		t.Fatalf("MarkRead with an expired id: changed %v unread %d err %v; want [%s] 1", changed, unread, err, live1.ID)
	}
	if n := mustAppend(t, s, note("alice", "after"))[0]; n.Seq != 5 {
		t.Fatalf("seq after expired newest %d, want 5", n.Seq)
	}
}

func testConcurrentAppend(t *testing.T, s tidings.Store) {
	const goroutines, perG = 8, 50
	users := []string{"u0", "u1", "u2", "u3"}
	ctx := ctxT(t)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	// Readers alongside the writers: reads never block or break appends.
	var readers sync.WaitGroup
	for _, u := range users[:2] {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.List(ctx, u, tidings.ListQuery{Limit: 5}); err != nil {
					t.Errorf("List during appends: %v", err)
					return
				}
			}
		}()
	}
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := map[string]int64{}
			for i := range perG {
				u := users[(g+i)%len(users)]
				got, err := s.Append(ctx, []tidings.NewNotification{note(u, fmt.Sprint(g, "/", i))})
				if err != nil {
					t.Errorf("goroutine %d append %d: %v", g, i, err)
					return
				}
				// One caller's appends commit in its call order.
				if got[0].Seq <= last[u] {
					t.Errorf("goroutine %d: %s seq %d after %d", g, u, got[0].Seq, last[u])
				}
				last[u] = got[0].Seq
			}
		}()
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	if t.Failed() {
		return
	}
	total := 0
	for _, u := range users {
		items := mustSince(t, s, u, 0, goroutines*perG)
		total += len(items)
		wantSeqs(t, u+"'s seqs", items, seqRange(1, int64(len(items))))
		if p := mustList(t, s, u, tidings.ListQuery{Limit: 1}); p.LastSeq != int64(len(items)) || p.Unread != len(items) {
			t.Fatalf("%s: LastSeq %d unread %d, want %d", u, p.LastSeq, p.Unread, len(items))
		}
	}
	if total != goroutines*perG {
		t.Fatalf("stored %d notifications, want %d", total, goroutines*perG)
	}
}

func testPing(t *testing.T, s tidings.Store) {
	if err := s.Ping(ctxT(t)); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func testClose(t *testing.T, s tidings.Store) {
	mustAppend(t, s, note("alice", "before close"))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// After Close, calls fail cleanly rather than panic or hang.
	if _, err := s.Append(ctxT(t), []tidings.NewNotification{note("alice", "after close")}); err == nil {
		t.Fatal("Append after Close succeeded")
	}
	if err := s.Ping(ctxT(t)); err == nil {
		t.Fatal("Ping after Close succeeded")
	}
}
