package sse

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestParseCursor(t *testing.T) {
	resolve := func(ch string) string {
		if ch == "@user" {
			return "user:alice"
		}
		return ch
	}
	one := []string{"user:alice"}
	two := []string{"user:alice", "news:today"}
	ok := []struct {
		text  string
		chans []string
		want  *cursor
	}{
		{"", one, nil},
		{"17", one, &cursor{"user:alice", 17}},
		{"0", one, &cursor{"user:alice", 0}},
		{"user:alice@17", one, &cursor{"user:alice", 17}},
		{"@user@3", one, &cursor{"user:alice", 3}},
		{"news:today@4", two, &cursor{"news:today", 4}},
		{"user:alice@9", two, &cursor{"user:alice", 9}},
	}
	for _, c := range ok {
		got, err := parseCursor(c.text, c.chans, resolve)
		if err != nil || (got == nil) != (c.want == nil) || (got != nil && *got != *c.want) {
			t.Errorf("%q: %+v %v, want %+v", c.text, got, err, c.want)
		}
	}
	bad := []struct {
		text  string
		chans []string
	}{
		{"abc", one}, {"-1", one}, {"+1", one}, {"1.5", one}, {"99999999999999999999", one},
		{"user:bob@1", one}, {"user:alice@", one}, {"user:alice@x", one},
		{"4", two}, {"other@4", two}, {"@", two},
	}
	for _, c := range bad {
		if got, err := parseCursor(c.text, c.chans, resolve); err == nil {
			t.Errorf("%q over %v: accepted as %+v", c.text, c.chans, got)
		}
	}
}

func TestLastEventIDSources(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/v1/sse?lastEventId=2&last_event_id=3", nil)
	if got := lastEventID(r); got != "2" {
		t.Fatalf("query: %q", got)
	}
	r.Header.Set("Last-Event-ID", "1")
	if got := lastEventID(r); got != "1" {
		t.Fatalf("header first: %q", got)
	}
	r = httptest.NewRequest(http.MethodGet, "/v1/sse?last_event_id=3", nil)
	if got := lastEventID(r); got != "3" {
		t.Fatalf("last_event_id: %q", got)
	}
}
