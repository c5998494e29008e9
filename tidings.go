// Package tidings holds the domain of the Tidings notification server: the
// types every adapter shares (notifications, channels, messages, errors) and
// the small interfaces that adapters implement (Store, Broker).
//
// Adapters live in subpackages named for their technology
// (internal/store/sqlitestore, internal/broker/membroker, ...); wiring
// happens in cmd/tidings.
package tidings

import (
	"encoding/json"
	"time"
)

// Notification is a durable inbox item for one user.
type Notification struct {
	// ID is time-sortable (a ULID) and unique across users.
	ID string `json:"id"`
	// Seq is the user's sequence number: 1, 2, 3, ... in storage order.
	// It is the cursor a client resumes from.
	Seq       int64           `json:"seq"`
	User      string          `json:"user"`
	Type      string          `json:"type"`
	Title     string          `json:"title"`
	Body      string          `json:"body"`
	URL       string          `json:"url"`
	Data      json.RawMessage `json:"data"`
	Group     string          `json:"group"`
	CreatedAt time.Time       `json:"created_at"`
	ReadAt    *time.Time      `json:"read_at"`
	ExpiresAt *time.Time      `json:"expires_at"`
}

// NewNotification is what a publisher hands in for one user.
type NewNotification struct {
	ID    string // assigned by the caller (NewID) before Append
	User  string
	Type  string
	Title string
	Body  string
	URL   string
	Data  json.RawMessage // nil or valid JSON
	Group string
	// IdempotencyKey, when set, makes a retry safe: appending a second
	// notification with the same (User, IdempotencyKey) returns the first.
	IdempotencyKey string
	CreatedAt      time.Time
	ExpiresAt      *time.Time
}

// ListQuery selects a page of a user's inbox, newest first.
type ListQuery struct {
	Limit      int   // 1..500; 0 means the default (50)
	BeforeSeq  int64 // only items with Seq < BeforeSeq; 0 means from the newest
	UnreadOnly bool
}

// Page is one page of a user's inbox.
type Page struct {
	Items []Notification
	// Next is the BeforeSeq of the next (older) page, 0 when there is none.
	Next int64
	// Unread is the user's unread count at the time of the read.
	Unread int
	// LastSeq is the highest sequence number the user has been given, the
	// cursor a client goes live from after loading this page.
	LastSeq int64
}
