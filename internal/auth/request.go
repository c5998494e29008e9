package auth

import (
	"net/http"
	"strings"
)

// Credential extraction. Every transport and endpoint takes credentials
// through these functions, so the places a token may come from are the same
// everywhere and written down once.

// BearerToken returns X from "Authorization: Bearer X". The scheme is
// case-insensitive (RFC 9110 §11.1); anything else gives "".
func BearerToken(r *http.Request) string {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// UserToken returns a user's token: the query parameter "token" (browsers
// cannot set headers on a WebSocket or EventSource), then the bearer
// token, then the cookie cookieName when it is not empty. The first
// non-empty one wins.
func UserToken(r *http.Request, cookieName string) string {
	if t := r.URL.Query().Get("token"); t != "" {
		return t
	}
	if t := BearerToken(r); t != "" {
		return t
	}
	if cookieName != "" {
		if c, err := r.Cookie(cookieName); err == nil && c.Value != "" {
			return c.Value
		}
	}
	return ""
}

// APIKey returns a publisher's key: the bearer token, then X-API-Key.
func APIKey(r *http.Request) string {
	if k := BearerToken(r); k != "" {
		return k
	}
	return strings.TrimSpace(r.Header.Get("X-API-Key"))
}

// AdminKey returns the operator's key: the bearer token, then X-Admin-Key.
func AdminKey(r *http.Request) string {
	if k := BearerToken(r); k != "" {
		return k
	}
	return strings.TrimSpace(r.Header.Get("X-Admin-Key"))
}
