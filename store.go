package tidings

import "context"

// Store keeps users' inboxes. Implementations: internal/store/sqlitestore
// (embedded default). The conformance suite internal/store/storetest runs
// against every implementation.
//
// Contract:
//   - Append returns only after every notification of the call is durably
//     committed (it survives a process kill). Calls may be grouped into one
//     transaction (group commit); a call is all-or-nothing.
//   - Seq is assigned per user, strictly increasing in commit order, never
//     reused, even after deletes; the first notification of a user gets 1.
//   - Idempotency: a NewNotification whose (User, IdempotencyKey) was stored
//     before is not stored again; Append returns the stored one in its place.
//   - Expired notifications (ExpiresAt in the past) are never returned and
//     are purged eventually.
//   - All methods are safe for concurrent use.
type Store interface {
	// Append stores the batch and returns the stored notifications in the
	// same order, with ID, Seq and CreatedAt set.
	Append(ctx context.Context, batch []NewNotification) ([]Notification, error)
	// List returns a page of the user's inbox, newest first.
	List(ctx context.Context, user string, q ListQuery) (Page, error)
	// Since returns up to limit notifications of the user with Seq > after,
	// oldest first; it is how a client resumes from a cursor.
	Since(ctx context.Context, user string, after int64, limit int) ([]Notification, error)
	// Unread counts the user's unread, unexpired notifications.
	Unread(ctx context.Context, user string) (int, error)
	// MarkRead marks the given ids (or all, when all is true) read and
	// returns the ids that changed from unread to read (nil for all) and the
	// unread count after the change. Unknown ids or other users' ids are
	// ignored, but when none of a non-empty list of ids is a notification
	// of the user, MarkRead changes nothing and returns ErrNotFound.
	MarkRead(ctx context.Context, user string, ids []string, all bool) (changed []string, unread int, err error)
	// Delete removes one notification of the user; ErrNotFound when the
	// user has no notification with that id.
	Delete(ctx context.Context, user, id string) error
	// Ping reports whether the store can serve (for /readyz).
	Ping(ctx context.Context) error
	// Close flushes pending work and releases resources; idempotent.
	Close() error
}

// CommitObserver is an optional Store capability. A store that has it calls
// fn after every commit that stored notifications, in commit order, with
// the notifications that commit stored (idempotent repeats excluded), so
// they can be published in sequence order. fn must not block: it runs on
// the store's writer. Set it once, before the first Append.
type CommitObserver interface {
	ObserveCommits(fn func([]Notification))
}
