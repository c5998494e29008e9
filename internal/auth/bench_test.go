package auth

import (
	"context"
	"testing"
	"time"
)

// BenchmarkAuthenticateHS256 is the token check on every WebSocket and SSE
// connect: an HS256 JWT with a subject and an expiry.
func BenchmarkAuthenticateHS256(b *testing.B) {
	secret := []byte("bench-secret-bench-secret-bench-secret")
	a, err := New(context.Background(), Config{JWTSecret: secret})
	if err != nil {
		b.Fatal(err)
	}
	tok, err := MintHS256(secret, "user-12345", time.Hour, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Authenticate(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}
