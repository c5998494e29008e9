package sse

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tidings/tidings"
)

func TestParseCursor(t *testing.T) {
	one := []string{"user:alice"}
	two := []string{"user:alice", "news:today"}
	both := tidings.EncodeCursor(map[string]int64{"user:alice": 9, "news:today": 4, "other:x": 1})
	ok := []struct {
		text  string
		chans []string
		want  cursor
	}{
		{"", one, nil},
		{"17", one, cursor{"user:alice": 17}},
		{"0", one, cursor{"user:alice": 0}},
		{both, one, cursor{"user:alice": 9}},
		{both, two, cursor{"user:alice": 9, "news:today": 4}},
		{tidings.EncodeCursor(map[string]int64{"news:today": 2}), two, cursor{"news:today": 2}},
	}
	for _, c := range ok {
		got, err := parseCursor(c.text, c.chans)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%q: %v %v, want %v", c.text, got, err, c.want)
		}
	}
	bad := []struct {
		text  string
		chans []string
	}{
		{"abc", one}, {"-1", one}, {"+1", one}, {"1.5", one}, {"99999999999999999999", one},
		{"user:alice@17", one}, {"4", two}, {"@", two},
		{tidings.EncodeCursor(map[string]int64{"a": 1})[:5] + "!", two},
	}
	for _, c := range bad {
		if got, err := parseCursor(c.text, c.chans); err == nil {
			t.Errorf("%q over %v: accepted as %v", c.text, c.chans, got)
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
