package auth

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/tidings/tidings"
)

// hookServer is an auth webhook that answers a fixed status and body and
// records the tokens it was asked about.
type hookServer struct {
	*httptest.Server
	mu     sync.Mutex
	tokens []string
}

func newHookServer(tb testing.TB, status int, answer string) *hookServer {
	tb.Helper()
	h := &hookServer{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req map[string]string
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &req) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.tokens = append(h.tokens, req["token"])
		h.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, answer)
	}))
	tb.Cleanup(h.Close)
	return h
}

func (h *hookServer) asked() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.tokens)
}

func TestWebhookAnswers(t *testing.T) {
	exp := testNow.Add(time.Hour).Unix()
	for _, tc := range []struct {
		name   string
		status int
		answer string
		user   string // "" when refused
		msg    string
	}{
		{"uid string", 200, `{"uid":"alice"}`, "alice", ""},
		{"uid number", 200, `{"uid":1001}`, "1001", ""},
		{"uid big number", 200, `{"uid":12345678901234567890}`, "12345678901234567890", ""},
		{"uid 1e3", 200, `{"uid":1e3}`, "1000", ""},
		{"uid 7.0", 200, `{"uid":7.0}`, "7", ""},
		{"other 2xx", 201, `{"uid":"bob","extra":true}`, "bob", ""},
		{"non-2xx", 401, `{"uid":"alice"}`, "", "webhook refused token"},
		{"server error", 500, `oops`, "", "webhook refused token"},
		{"missing uid", 200, `{"user":"alice"}`, "", "webhook refused token"},
		{"null uid", 200, `{"uid":null}`, "", "webhook refused token"},
		{"empty uid", 200, `{"uid":""}`, "", "webhook refused token"},
		{"float uid", 200, `{"uid":1.5}`, "", "webhook refused token"},
		{"bool uid", 200, `{"uid":true}`, "", "webhook refused token"},
		{"object uid", 200, `{"uid":{"id":1}}`, "", "webhook refused token"},
		{"bad JSON", 200, `{"uid":`, "", "webhook refused token"},
		{"not an object", 200, `[1001]`, "", "webhook refused token"},
		{"empty body", 200, ``, "", "webhook refused token"},
		{"expired", 200, `{"uid":"a","expires_at":` + strconv.FormatInt(testNow.Unix(), 10) + `}`, "", "token expired"},
		{"bad expiry", 200, `{"uid":"a","expires_at":"soon"}`, "", "webhook refused token"},
		{"with expiry", 200, `{"uid":"a","expires_at":` + strconv.FormatInt(exp, 10) + `}`, "a", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHookServer(t, tc.status, tc.answer)
			a := newAuth(t, Config{WebhookURL: h.URL, HTTPClient: h.Client()})
			if tc.user == "" {
				wantRefused(t, a, "opaque-token", tc.msg)
			} else if id := mustAuth(t, a, "opaque-token"); id.User != tc.user {
				t.Fatalf("user %q, want %q", id.User, tc.user)
			}
			if got := h.asked(); !slices.Equal(got, []string{"opaque-token"}) {
				t.Fatalf("webhook asked about %q", got)
			}
		})
	}
}

func TestWebhookChannelsAndExpiry(t *testing.T) {
	exp := testNow.Add(time.Hour)
	h := newHookServer(t, 200, `{"uid":1001,"channels":["post:1","group:*"],"expires_at":`+strconv.FormatInt(exp.Unix(), 10)+`}`)
	a := newAuth(t, Config{WebhookURL: h.URL, HTTPClient: h.Client()})
	id := mustAuth(t, a, "t")
	if id.User != "1001" || !slices.Equal(id.Channels, []string{"post:1", "group:*"}) || !id.Expires.Equal(exp) {
		t.Fatalf("identity %+v", id)
	}
}

func TestWebhookFallback(t *testing.T) {
	h := newHookServer(t, 200, `{"uid":"from-webhook"}`)
	a := newAuth(t, Config{JWTSecret: testSecret, WebhookURL: h.URL, HTTPClient: h.Client()})

	// A valid JWT never reaches the webhook.
	if id := mustAuth(t, a, sign(t, jwt.SigningMethodHS256, testSecret, "", userClaims("from-jwt"))); id.User != "from-jwt" {
		t.Fatalf("user %q", id.User)
	}
	if got := h.asked(); len(got) != 0 {
		t.Fatalf("webhook asked about %q", got)
	}
	// Tokens that are not a JWT of the configured key go to the webhook.
	other := sign(t, jwt.SigningMethodHS256, []byte("some other secret"), "", userClaims("x"))
	for _, tok := range []string{other, "opaque", noneToken(`{"alg":"none"}`, `{"sub":"x"}`)} {
		if id := mustAuth(t, a, tok); id.User != "from-webhook" {
			t.Fatalf("user %q", id.User)
		}
	}
	// A JWT of the configured key that its claims refuse is refused
	// without asking: the client learns it expired.
	expired := sign(t, jwt.SigningMethodHS256, testSecret, "", jwt.MapClaims{"sub": "u1", "exp": testNow.Add(-time.Minute).Unix()})
	wantRefused(t, a, expired, "token expired")
	wantRefused(t, a, sign(t, jwt.SigningMethodHS256, testSecret, "", jwt.MapClaims{"exp": testNow.Add(time.Minute).Unix()}), "token has no valid subject")
	if got := h.asked(); len(got) != 3 {
		t.Fatalf("webhook asked %d times, want 3", len(got))
	}
}

func TestWebhookFallbackRefused(t *testing.T) {
	h := newHookServer(t, 403, `{}`)
	a := newAuth(t, Config{JWTSecret: testSecret, WebhookURL: h.URL, HTTPClient: h.Client()})
	wantRefused(t, a, sign(t, jwt.SigningMethodHS256, []byte("wrong"), "", userClaims("x")), "webhook refused token")
}

func TestWebhookUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	a := newAuth(t, Config{WebhookURL: url})
	_, err := a.Authenticate(t.Context(), "t")
	wantCode(t, err, tidings.CodeUnavailable, "auth webhook unavailable")
}

func TestWebhookAnswerTooLong(t *testing.T) {
	h := newHookServer(t, 200, `{"uid":"a","pad":"`+string(make([]byte, maxWebhookAnswer))+`"}`)
	a := newAuth(t, Config{WebhookURL: h.URL, HTTPClient: h.Client()})
	wantRefused(t, a, "t", "webhook refused token")
}

func TestUIDText(t *testing.T) {
	for raw, want := range map[string]string{
		`"x"`: "x", `0`: "0", `-0`: "0", `-12`: "-12", `1001`: "1001", `1E2`: "100",
		`9007199254740992.0`: "9007199254740992",
	} {
		got, err := uidText(json.RawMessage(raw))
		if err != nil || got != want {
			t.Errorf("uidText(%s) = %q, %v; want %q", raw, got, err, want)
		}
	}
	for _, raw := range []string{``, `null`, `true`, `[]`, `{}`, `0.5`, `1e300`, `18014398509481984.0`} {
		if got, err := uidText(json.RawMessage(raw)); err == nil {
			t.Errorf("uidText(%s) = %q, want an error", raw, got)
		}
	}
}
