package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tidings/tidings"
)

func TestDefaults(t *testing.T) {
	c := Defaults()
	want := Config{
		Listen: ":8080", DataDir: "./data",
		WSPath: "/v1/ws", SSEPath: "/v1/sse", PollPath: "/v1/poll",
		Store: "sqlite", Broker: "memory",
		ChannelsDefault: tidings.PolicyPublic, TokenCookie: "tidings_token",
		PingInterval: 25 * time.Second, IdleTimeout: 60 * time.Second, PollTimeoutMax: 60 * time.Second,
		MaxFrameBytes: 65536, MaxBodyBytes: 1048576, MaxSubscriptions: 128,
		DevTokenTTL: 24 * time.Hour, LogLevel: "info", LogFormat: "text",
		ShutdownTimeout: 10 * time.Second,
	}
	// Compare the scalar part; the map is checked on its own.
	got := c
	got.Namespaces = nil
	if !equalConfig(got, want) {
		t.Errorf("Defaults() =\n%+v\nwant\n%+v", got, want)
	}
	if c.Namespaces == nil || len(c.Namespaces) != 0 {
		t.Errorf("Namespaces = %#v, want an empty map", c.Namespaces)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Defaults().Validate() = %v", err)
	}
}

// equalConfig compares two configs through their effective YAML, which
// covers every key, including lists.
func equalConfig(a, b Config) bool {
	return effective(nil, &a, true) == effective(nil, &b, true)
}

func TestLoadNothingGivesDefaults(t *testing.T) {
	c, warnings, err := Load(nil, nil)
	if err != nil || len(warnings) > 0 {
		t.Fatalf("Load(nil, nil) = %v, %v", warnings, err)
	}
	if !equalConfig(*c, Defaults()) {
		t.Errorf("Load(nil, nil) differs from Defaults():\n%s", effective(t, c, true))
	}
}

func TestPathPrefix(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"/", ""},
		{"  ", ""},
		{"/websocket", "/websocket"},
		{"/websocket/", "/websocket"},
		{"websocket", "/websocket"},
		{"websocket/", "/websocket"},
		{"//a//b/", "/a/b"},
	} {
		c, _, err := Load([]string{"--path-prefix", tc.in}, nil)
		if err != nil {
			t.Fatalf("prefix %q: %v", tc.in, err)
		}
		if c.PathPrefix != tc.want {
			t.Errorf("prefix %q normalised to %q, want %q", tc.in, c.PathPrefix, tc.want)
		}
	}
}

func TestPath(t *testing.T) {
	c := Defaults()
	if got := c.Path("/v1/ws"); got != "/v1/ws" {
		t.Errorf("no prefix: Path = %q", got)
	}
	c.PathPrefix = "/websocket"
	for in, want := range map[string]string{
		"/v1/ws": "/websocket/v1/ws",
		"v1/sse": "/websocket/v1/sse",
		"/":      "/websocket/",
	} {
		if got := c.Path(in); got != want {
			t.Errorf("Path(%q) = %q, want %q", in, got, want)
		}
	}
	c.PathPrefix = "websocket/" // hand-built, not normalised
	if got := c.Path("/v1/ws"); got != "/websocket/v1/ws" {
		t.Errorf("unnormalised prefix: Path = %q", got)
	}
}

// writeFile writes content to a file in a fresh temporary directory.
func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
