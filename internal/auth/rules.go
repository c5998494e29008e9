package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/tidings/tidings"
)

// Rules decide who may subscribe to which channel (PRODUCT.md, "Channel
// rules by default"): personal channels are owner-only, every other
// channel follows the policy of its namespace, or Default. The zero value
// lets any authenticated user subscribe to any topic channel. Rules must not
// be changed while Allow runs.
type Rules struct {
	Default    tidings.Policy            // "" means public
	Namespaces map[string]tidings.Policy // namespace (text before ':') → policy
	// SubscribeWebhookURL is asked for PolicyWebhook namespaces:
	// POST {"user":"…","channel":"…"}; a 2xx answer allows.
	SubscribeWebhookURL string
	HTTPClient          *http.Client // nil = a client with a 5 s timeout
}

// Allow decides whether id may subscribe to channel (already resolved: "@user" is never passed).
//
// "user:<id>" is owner-only whatever the configuration: no policy can open
// one user's notifications to another. Otherwise:
//   - public: any authenticated user;
//   - claim: channel is listed in id.Channels, exactly or by a listed
//     pattern ending in "*" that is a prefix of it ("group:*");
//   - webhook: the subscribe webhook answers 2xx;
//   - deny, or a policy Allow does not know: nobody.
//
// A refusal is CodeForbidden naming the channel; an invalid name is
// CodeBadRequest; an identity without user is CodeNotAuthenticated; a
// subscribe webhook that cannot be reached is CodeUnavailable.
func (r *Rules) Allow(ctx context.Context, id tidings.Identity, channel string) error {
	if !tidings.ValidChannel(channel) {
		return tidings.Errorf(tidings.CodeBadRequest, "invalid channel name")
	}
	if id.User == "" {
		return refuse("not authenticated", nil)
	}
	if strings.HasPrefix(channel, tidings.PersonalPrefix) {
		if channel == tidings.PersonalChannel(id.User) {
			return nil
		}
		return forbidden(channel, fmt.Errorf("personal channel of another user"))
	}
	policy := r.Default
	if p, ok := r.Namespaces[tidings.Namespace(channel)]; ok {
		policy = p
	}
	switch policy {
	case "", tidings.PolicyPublic:
		return nil
	case tidings.PolicyClaim:
		if claimAllows(id.Channels, channel) {
			return nil
		}
		return forbidden(channel, fmt.Errorf("not in the token's channels claim"))
	case tidings.PolicyWebhook:
		return r.askWebhook(ctx, id.User, channel)
	case tidings.PolicyDeny:
		return forbidden(channel, fmt.Errorf("namespace policy deny"))
	default:
		return forbidden(channel, fmt.Errorf("unknown policy %q", policy))
	}
}

// claimAllows reports whether a channels claim lists channel, exactly or
// through a pattern "prefix*".
func claimAllows(claimed []string, channel string) bool {
	for _, c := range claimed {
		if c == channel {
			return true
		}
		if prefix, ok := strings.CutSuffix(c, "*"); ok && strings.HasPrefix(channel, prefix) {
			return true
		}
	}
	return false
}

// askWebhook asks the app's subscribe webhook; anything but a 2xx answer
// refuses.
func (r *Rules) askWebhook(ctx context.Context, user, channel string) error {
	if r.SubscribeWebhookURL == "" {
		return forbidden(channel, fmt.Errorf("webhook policy without a subscribe webhook URL"))
	}
	body, err := json.Marshal(struct {
		User    string `json:"user"`
		Channel string `json:"channel"`
	}{user, channel})
	if err != nil {
		return forbidden(channel, err)
	}
	client := r.HTTPClient
	if client == nil {
		client = defaultClient
	}
	status, _, err := postJSON(ctx, client, r.SubscribeWebhookURL, body)
	if err != nil {
		return &tidings.Error{Code: tidings.CodeUnavailable, Msg: "subscribe webhook unavailable", Err: err}
	}
	if status < 200 || status > 299 {
		return forbidden(channel, fmt.Errorf("subscribe webhook answered status %d", status))
	}
	return nil
}

func forbidden(channel string, cause error) error {
	return &tidings.Error{Code: tidings.CodeForbidden, Msg: "not allowed to subscribe to " + channel, Err: cause}
}

// ParsePolicy reads a policy name as written in the configuration
// ("public", "claim", "webhook", "deny"; case and surrounding space do not
// matter). An empty string is the default, public.
func ParsePolicy(s string) (tidings.Policy, error) {
	switch p := tidings.Policy(strings.ToLower(strings.TrimSpace(s))); p {
	case "":
		return tidings.PolicyPublic, nil
	case tidings.PolicyPublic, tidings.PolicyClaim, tidings.PolicyWebhook, tidings.PolicyDeny:
		return p, nil
	}
	return "", fmt.Errorf("unknown channel policy %q (want public, claim, webhook or deny)", s)
}
