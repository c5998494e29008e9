package auth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tidings/tidings"
)

func TestRulesPersonalChannelIsOwnerOnly(t *testing.T) {
	alice := tidings.Identity{User: "alice", Channels: []string{"*", "user:bob"}}
	// Whatever the configuration says about the "user" namespace.
	for _, r := range []*Rules{
		{},
		{Default: tidings.PolicyPublic, Namespaces: map[string]tidings.Policy{"user": tidings.PolicyPublic}},
		{Namespaces: map[string]tidings.Policy{"user": tidings.PolicyClaim}},
		{Default: tidings.PolicyDeny},
	} {
		if err := r.Allow(t.Context(), alice, "user:alice"); err != nil {
			t.Errorf("%+v: own channel refused: %v", r, err)
		}
		for _, ch := range []string{"user:bob", "user:alice2", "user:", "user:alice:x"} {
			wantCode(t, r.Allow(t.Context(), alice, ch), tidings.CodeForbidden, ch)
		}
	}
}

func TestRulesPolicies(t *testing.T) {
	r := &Rules{
		Default: tidings.PolicyPublic,
		Namespaces: map[string]tidings.Policy{
			"group":   tidings.PolicyClaim,
			"private": tidings.PolicyDeny,
			"odd":     "something",
		},
	}
	id := tidings.Identity{User: "u1", Channels: []string{"group:chess", "group:team-*"}}
	for ch, allowed := range map[string]bool{
		"post:42":        true, // default public
		"broadcast":      true, // no namespace: default
		"group:chess":    true, // claim, exact
		"group:team-red": true, // claim, prefix pattern
		"group:team-":    true,
		"group:go":       false,
		"group:chess2":   false,
		"group:tea":      false,
		"private:x":      false,
		"odd:x":          false, // unknown policy fails closed
	} {
		err := r.Allow(t.Context(), id, ch)
		if allowed && err != nil {
			t.Errorf("%s refused: %v", ch, err)
		}
		if !allowed {
			wantCode(t, err, tidings.CodeForbidden, ch)
		}
	}
	claimDefault := &Rules{Default: tidings.PolicyClaim}
	if err := claimDefault.Allow(t.Context(), tidings.Identity{User: "u1", Channels: []string{"news"}}, "news"); err != nil {
		t.Error(err)
	}
	wantCode(t, claimDefault.Allow(t.Context(), tidings.Identity{User: "u1"}, "news"), tidings.CodeForbidden, "news")
	wantCode(t, (&Rules{Default: tidings.PolicyDeny}).Allow(t.Context(), id, "post:1"), tidings.CodeForbidden, "post:1")
}

func TestRulesBadInput(t *testing.T) {
	r := &Rules{}
	for _, ch := range []string{"", "a b", "tab\there", string(make([]byte, tidings.MaxChannelLen+1))} {
		wantCode(t, r.Allow(t.Context(), tidings.Identity{User: "u1"}, ch), tidings.CodeBadRequest, "invalid channel")
	}
	wantCode(t, r.Allow(t.Context(), tidings.Identity{}, "post:1"), tidings.CodeNotAuthenticated, "")
}

func TestRulesWebhook(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var body struct{ User, Channel string }
		if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json" ||
			json.NewDecoder(req.Body).Decode(&body) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if body.User == "u1" && body.Channel == "room:ok" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.WriteHeader(http.StatusForbidden)
	}))
	defer srv.Close()
	r := &Rules{Namespaces: map[string]tidings.Policy{"room": tidings.PolicyWebhook}, SubscribeWebhookURL: srv.URL, HTTPClient: srv.Client()}
	u1 := tidings.Identity{User: "u1"}
	if err := r.Allow(t.Context(), u1, "room:ok"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, r.Allow(t.Context(), u1, "room:no"), tidings.CodeForbidden, "room:no")
	wantCode(t, r.Allow(t.Context(), tidings.Identity{User: "u2"}, "room:ok"), tidings.CodeForbidden, "room:ok")
	// Personal channels never reach the webhook.
	wantCode(t, r.Allow(t.Context(), u1, "user:u2"), tidings.CodeForbidden, "user:u2")

	noURL := &Rules{Default: tidings.PolicyWebhook}
	wantCode(t, noURL.Allow(t.Context(), u1, "room:ok"), tidings.CodeForbidden, "room:ok")

	srv.Close()
	wantCode(t, r.Allow(t.Context(), u1, "room:ok"), tidings.CodeUnavailable, "subscribe webhook unavailable")
}

func TestParsePolicy(t *testing.T) {
	for s, want := range map[string]tidings.Policy{
		"public": tidings.PolicyPublic, " Claim ": tidings.PolicyClaim, "WEBHOOK": tidings.PolicyWebhook,
		"deny": tidings.PolicyDeny, "": tidings.PolicyPublic,
	} {
		if got, err := ParsePolicy(s); err != nil || got != want {
			t.Errorf("ParsePolicy(%q) = %q, %v; want %q", s, got, err, want)
		}
	}
	for _, s := range []string{"open", "private", "allow"} {
		if _, err := ParsePolicy(s); err == nil {
			t.Errorf("ParsePolicy(%q): want an error", s)
		}
	}
}
