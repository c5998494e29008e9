package tidings

import (
	"strings"
	"time"
	"unicode/utf8"
)

// UserAlias is what a client writes for its own personal channel.
const UserAlias = "@user"

// PersonalPrefix starts every personal channel: "user:<id>".
const PersonalPrefix = "user:"

// MaxChannelLen bounds a channel name in bytes.
const MaxChannelLen = 255

// PersonalChannel is the personal channel of a user.
func PersonalChannel(user string) string { return PersonalPrefix + user }

// Namespace is the part of a channel name before the first ':' ("post" for
// "post:42"); a channel without ':' has the empty namespace.
func Namespace(channel string) string {
	if i := strings.IndexByte(channel, ':'); i >= 0 {
		return channel[:i]
	}
	return ""
}

// ValidChannel reports whether name can be a channel: 1..255 bytes of
// UTF-8 with no white space or control characters.
func ValidChannel(name string) bool {
	if name == "" || len(name) > MaxChannelLen || !utf8.ValidString(name) {
		return false
	}
	for _, r := range name {
		if r <= ' ' || r == 0x7f {
			return false
		}
	}
	return true
}

// Identity is an authenticated user, as the auth layer hands it to
// transports.
type Identity struct {
	User string
	// Channels lists the channels the token's "channels" claim allows
	// (for namespaces with the claim policy).
	Channels []string
	// Expires is when the credential stops being valid (zero: never).
	Expires time.Time
}

// Policy says who may subscribe to the channels of a namespace.
type Policy string

const (
	PolicyPublic  Policy = "public"  // any authenticated user
	PolicyClaim   Policy = "claim"   // the token's channels claim lists it
	PolicyWebhook Policy = "webhook" // the app's subscribe webhook allows it
	PolicyDeny    Policy = "deny"    // nobody
)
