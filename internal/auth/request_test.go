package auth

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func request(target string, headers map[string]string, cookie *http.Cookie) *http.Request {
	r := httptest.NewRequest(http.MethodGet, target, nil)
	for k, v := range headers {
		r.Header.Set(k, v)
	}
	if cookie != nil {
		r.AddCookie(cookie)
	}
	return r
}

func TestBearerToken(t *testing.T) {
	for header, want := range map[string]string{
		"Bearer abc":     "abc",
		"bearer abc":     "abc",
		"BEARER  abc ":   "abc",
		"Basic abc":      "",
		"Bearer":         "",
		"Bearer ":        "",
		"Bearerabc":      "",
		"":               "",
		"Token abc":      "",
		"Bearer a.b.c-_": "a.b.c-_",
	} {
		r := request("/", map[string]string{"Authorization": header}, nil)
		if got := BearerToken(r); got != want {
			t.Errorf("BearerToken(%q) = %q, want %q", header, got, want)
		}
	}
}

func TestUserTokenPrecedence(t *testing.T) {
	bearer := map[string]string{"Authorization": "Bearer from-header"}
	cookie := &http.Cookie{Name: "tidings_token", Value: "from-cookie"}
	for _, tc := range []struct {
		name   string
		r      *http.Request
		cookie string
		want   string
	}{
		{"query first", request("/?token=from-query", bearer, cookie), "tidings_token", "from-query"},
		{"then bearer", request("/", bearer, cookie), "tidings_token", "from-header"},
		{"empty query skipped", request("/?token=", bearer, cookie), "tidings_token", "from-header"},
		{"then cookie", request("/", nil, cookie), "tidings_token", "from-cookie"},
		{"cookie off", request("/", nil, cookie), "", ""},
		{"other cookie", request("/", nil, cookie), "session", ""},
		{"nothing", request("/", nil, nil), "tidings_token", ""},
	} {
		if got := UserToken(tc.r, tc.cookie); got != tc.want {
			t.Errorf("%s: UserToken = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestAPIAndAdminKey(t *testing.T) {
	both := map[string]string{"Authorization": "Bearer b", "X-API-Key": "x", "X-Admin-Key": "y"}
	if got := APIKey(request("/", both, nil)); got != "b" {
		t.Errorf("APIKey = %q, want the bearer", got)
	}
	if got := AdminKey(request("/", both, nil)); got != "b" {
		t.Errorf("AdminKey = %q, want the bearer", got)
	}
	headers := map[string]string{"X-API-Key": "x", "X-Admin-Key": "y"}
	if got := APIKey(request("/", headers, nil)); got != "x" {
		t.Errorf("APIKey = %q, want x", got)
	}
	if got := AdminKey(request("/", headers, nil)); got != "y" {
		t.Errorf("AdminKey = %q, want y", got)
	}
	if APIKey(request("/?token=q", nil, nil)) != "" || AdminKey(request("/", nil, nil)) != "" {
		t.Error("a key from nowhere")
	}
}
