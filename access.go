package tidings

import "context"

// Authenticator turns a user token into an identity (internal/auth). A
// refusal is an *Error with CodeNotAuthenticated (CodeUnavailable when the
// auth webhook cannot be reached).
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (Identity, error)
}

// Authorizer decides whether an identity may listen to a channel
// (internal/auth.Rules); a refusal is an *Error with CodeForbidden.
type Authorizer interface {
	Allow(ctx context.Context, id Identity, channel string) error
}

// Replayer gives what a channel published after a cursor, oldest first,
// with a gap notice first when part of it is gone, and the channel's
// newest cursor (internal/inbox.Service).
type Replayer interface {
	Replay(ctx context.Context, channel string, after int64) ([]*Message, error)
	Cursor(ctx context.Context, channel string) (int64, error)
}
