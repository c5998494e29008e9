package config

import (
	"errors"
	"flag"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tidings/tidings"
)

func mustLoad(t testing.TB, args, environ []string) (*Config, []string) {
	t.Helper()
	c, warnings, err := Load(args, environ)
	if err != nil {
		t.Fatalf("Load(%q, %q): %v", args, environ, err)
	}
	return c, warnings
}

func TestPrecedence(t *testing.T) {
	file := writeFile(t, "tidings.yaml", `
listen: ":1000"
data_dir: /from/file
log_level: debug
max_subscriptions: 10
`)
	env := []string{
		"TIDINGS_CONFIG=" + file,
		"TIDINGS_DATA_DIR=/from/env",
		"TIDINGS_LOG_LEVEL=warn",
		"PATH=/usr/bin", // not ours: ignored without a warning
	}
	args := []string{"--log-level", "error"}

	c, warnings := mustLoad(t, args, env)
	if len(warnings) > 0 {
		t.Errorf("warnings: %q", warnings)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate() = %v", err)
	}
	if c.Listen != ":1000" {
		t.Errorf("file < default: listen = %q", c.Listen)
	}
	if c.MaxSubscriptions != 10 {
		t.Errorf("file < default: max_subscriptions = %d", c.MaxSubscriptions)
	}
	if c.DataDir != "/from/env" {
		t.Errorf("env < file: data_dir = %q", c.DataDir)
	}
	if c.LogLevel != "error" {
		t.Errorf("flag < env: log_level = %q", c.LogLevel)
	}
	if c.PollPath != "/v1/poll" {
		t.Errorf("untouched key: poll_path = %q", c.PollPath)
	}
}

func TestConfigFlagWinsOverEnv(t *testing.T) {
	envFile := writeFile(t, "env.yaml", "listen: \":1\"\n")
	flagFile := writeFile(t, "flag.yaml", "listen: \":2\"\n")
	c, _ := mustLoad(t, []string{"--config=" + flagFile}, []string{EnvConfig + "=" + envFile})
	if c.Listen != ":2" {
		t.Errorf("listen = %q, want the --config file's :2", c.Listen)
	}
}

func TestMissingFileIsAnError(t *testing.T) {
	if _, _, err := Load([]string{"--config", "/nonexistent/tidings.yaml"}, nil); err == nil {
		t.Error("Load with a missing config file succeeded")
	}
}

func TestLists(t *testing.T) {
	want := []string{"k1", "k2", "k3"}
	for name, tc := range map[string]struct {
		file string
		env  []string
		args []string
	}{
		"file list":   {file: "api_keys:\n  - k1\n  - k2\n  - k3\n"},
		"file flow":   {file: "api_keys: [k1, k2, k3]\n"},
		"file string": {file: "api_keys: k1, k2,k3\n"},
		"env":         {env: []string{"TIDINGS_API_KEYS=k1, k2,,k3"}},
		"flag":        {args: []string{"--api-keys", "k1,k2,k3"}},
		"flag repeat": {args: []string{"--api-keys", "k1", "--api-keys", "k2,k3"}},
	} {
		t.Run(name, func(t *testing.T) {
			env := tc.env
			if tc.file != "" {
				env = append(env, EnvConfig+"="+writeFile(t, "c.yaml", tc.file))
			}
			c, _ := mustLoad(t, tc.args, env)
			if !slices.Equal(c.APIKeys, want) {
				t.Errorf("api_keys = %q, want %q", c.APIKeys, want)
			}
		})
	}
}

func TestListFlagReplacesEnv(t *testing.T) {
	c, _ := mustLoad(t, []string{"--allowed-origins", "https://b.example"},
		[]string{"TIDINGS_ALLOWED_ORIGINS=https://a.example"})
	if !slices.Equal(c.AllowedOrigins, []string{"https://b.example"}) {
		t.Errorf("allowed_origins = %q", c.AllowedOrigins)
	}
}

func TestDurations(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"25s":   25 * time.Second,
		"25":    25 * time.Second,
		"1.5":   1500 * time.Millisecond,
		"1h30m": 90 * time.Minute,
		"0":     0,
	} {
		d, err := parseDuration(in)
		if err != nil || d != want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v", in, d, err, want)
		}
	}
	for _, in := range []string{"", "soon", "25 s", "NaN", "Inf", "1e300"} {
		if _, err := parseDuration(in); err == nil {
			t.Errorf("parseDuration(%q) succeeded", in)
		}
	}

	file := writeFile(t, "c.yaml", "ping_interval: 10\nidle_timeout: 2m\nnamespaces:\n  post:\n    history_ttl: 3600\n")
	c, _ := mustLoad(t, []string{"--poll-timeout-max=30"},
		[]string{EnvConfig + "=" + file, "TIDINGS_SHUTDOWN_TIMEOUT=1m30s", "TIDINGS_DEV_TOKEN_TTL=7200", "TIDINGS_MIN_WRITE_INTERVAL=250ms"})
	for name, got := range map[string][2]time.Duration{
		"ping_interval (file, seconds)":    {c.PingInterval, 10 * time.Second},
		"idle_timeout (file, Go)":          {c.IdleTimeout, 2 * time.Minute},
		"history_ttl (file, seconds)":      {c.Namespaces["post"].HistoryTTL, time.Hour},
		"shutdown_timeout (env, Go)":       {c.ShutdownTimeout, 90 * time.Second},
		"dev_token_ttl (env, seconds)":     {c.DevTokenTTL, 2 * time.Hour},
		"poll_timeout_max (flag, seconds)": {c.PollTimeoutMax, 30 * time.Second},
		"min_write_interval (env, Go)":     {c.MinWriteInterval, 250 * time.Millisecond},
	} {
		if got[0] != got[1] {
			t.Errorf("%s = %v, want %v", name, got[0], got[1])
		}
	}
}

func TestBooleans(t *testing.T) {
	for in, want := range map[string]bool{"true": true, "TRUE": true, "1": true, "false": false, "False": false, "0": false} {
		c, _ := mustLoad(t, nil, []string{"TIDINGS_DEV=" + in})
		if c.Dev != want {
			t.Errorf("TIDINGS_DEV=%s: dev = %v", in, c.Dev)
		}
	}
	for _, in := range []string{"yes", "t", "2"} {
		if _, _, err := Load(nil, []string{"TIDINGS_DEV=" + in}); err == nil || !strings.Contains(err.Error(), "TIDINGS_DEV") {
			t.Errorf("TIDINGS_DEV=%s: err = %v, want one naming the variable", in, err)
		}
	}

	c, _ := mustLoad(t, []string{"--dev"}, []string{"TIDINGS_DEV=false"})
	if !c.Dev {
		t.Error("bare --dev did not set dev")
	}
	c, _ = mustLoad(t, []string{"--dev=false"}, []string{"TIDINGS_DEV=1"})
	if c.Dev {
		t.Error("--dev=false did not win over the environment")
	}
	file := writeFile(t, "c.yaml", "metrics_auth: true\ndev: 1\n")
	c, _ = mustLoad(t, []string{"--config", file}, nil)
	if !c.MetricsAuth || !c.Dev {
		t.Errorf("file booleans: metrics_auth=%v dev=%v", c.MetricsAuth, c.Dev)
	}
}

func TestEmptyEnvIsUnset(t *testing.T) {
	c, _ := mustLoad(t, nil, []string{"TIDINGS_LISTEN=", "TIDINGS_API_KEYS="})
	if c.Listen != ":8080" || c.APIKeys != nil {
		t.Errorf("listen = %q, api_keys = %q", c.Listen, c.APIKeys)
	}
}

func TestUnknownEnvWarns(t *testing.T) {
	c, warnings := mustLoad(t, nil, []string{"TIDINGS_API_KEY=k", "TIDINGS_FROBNICATE=1", "TIDINGS_LISTEN=:9000", "TIDINGS_INGEST=x"})
	if c.Listen != ":9000" {
		t.Errorf("listen = %q", c.Listen)
	}
	if len(warnings) != 3 {
		t.Fatalf("warnings = %q, want three", warnings)
	}
	if !strings.Contains(warnings[2], "TIDINGS_INGEST") || !strings.Contains(warnings[2], "config file") {
		t.Errorf("warning %q should say ingest is file only", warnings[2])
	}
	if !strings.Contains(warnings[0], "TIDINGS_API_KEY") || !strings.Contains(warnings[0], "TIDINGS_API_KEYS") {
		t.Errorf("warning %q should name the variable and suggest TIDINGS_API_KEYS", warnings[0])
	}
	if !strings.Contains(warnings[1], "TIDINGS_FROBNICATE") {
		t.Errorf("warning %q should name TIDINGS_FROBNICATE", warnings[1])
	}
}

func TestUnknownFileKeyWarns(t *testing.T) {
	file := writeFile(t, "c.yaml", `
listen: ":9000"
lissten: ":1"
namespaces:
  post:
    policy: claim
    histroy_size: 5
ingest:
  - name: mq
    type: mqtt
    url: tcp://127.0.0.1:1883
    topic: "notification{user}"
    deadletter: dead
`)
	c, warnings := mustLoad(t, []string{"--config", file}, nil)
	if c.Listen != ":9000" {
		t.Errorf("listen = %q", c.Listen)
	}
	if len(warnings) != 3 {
		t.Fatalf("warnings = %q, want three", warnings)
	}
	for i, want := range []string{`"lissten"`, `"histroy_size"`, `"deadletter"`} {
		if !strings.Contains(warnings[i], want) {
			t.Errorf("warning %d = %q, want it to name %s", i, warnings[i], want)
		}
	}
	if !strings.Contains(warnings[0], `"listen"`) || !strings.Contains(warnings[0], "line 3") {
		t.Errorf("warning %q should give the line and suggest listen", warnings[0])
	}
}

func TestFileSections(t *testing.T) {
	file := writeFile(t, "c.yaml", `
subscribe_webhook_url: https://app.example/subscribe
namespaces:
  post:
    policy: Claim
    history_size: 50
    history_ttl: 10m
  group:
    policy: webhook
  "":
    policy: deny
ingest:
  - name: rabbit
    type: amqp
    url: amqp://guest:guest@127.0.0.1:5672/
    queue: tidings.notifications
    dead_letter: tidings.dead
    prefetch: 64
  - name: redis
    type: redis-stream
    url: redis://127.0.0.1:6379/0
    stream: tidings:notifications
    group: tidings
    kind: event
    default_type: message
`)
	c, warnings := mustLoad(t, []string{"--config", file}, nil)
	if len(warnings) > 0 {
		t.Errorf("warnings: %q", warnings)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate() = %v", err)
	}
	wantNS := map[string]Namespace{
		"post":  {Policy: tidings.PolicyClaim, HistorySize: 50, HistoryTTL: 10 * time.Minute},
		"group": {Policy: tidings.PolicyWebhook},
		"":      {Policy: tidings.PolicyDeny},
	}
	if len(c.Namespaces) != len(wantNS) {
		t.Errorf("namespaces = %+v", c.Namespaces)
	}
	for k, v := range wantNS {
		if c.Namespaces[k] != v {
			t.Errorf("namespaces[%q] = %+v, want %+v", k, c.Namespaces[k], v)
		}
	}
	want := []Ingest{
		{Name: "rabbit", Type: "amqp", URL: "amqp://guest:guest@127.0.0.1:5672/", Queue: "tidings.notifications", DeadLetter: "tidings.dead", Prefetch: 64},
		{Name: "redis", Type: "redis-stream", URL: "redis://127.0.0.1:6379/0", Stream: "tidings:notifications", Group: "tidings", Kind: "event", DefaultType: "message"},
	}
	if !slices.Equal(c.Ingest, want) {
		t.Errorf("ingest =\n%+v\nwant\n%+v", c.Ingest, want)
	}
}

func TestParseErrorsAreCollected(t *testing.T) {
	file := writeFile(t, "c.yaml", "max_frame_bytes: big\nlisten: [a, b]\nlisten: \":1\"\n")
	_, _, err := Load(nil, []string{EnvConfig + "=" + file, "TIDINGS_PING_INTERVAL=often", "TIDINGS_MAX_BODY_BYTES=1MiB"})
	if err == nil {
		t.Fatal("Load succeeded")
	}
	for _, want := range []string{"max_frame_bytes", "listen: expected a single value", "repeats", "TIDINGS_PING_INTERVAL", "TIDINGS_MAX_BODY_BYTES"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
}

// Load reads values that parse but are invalid, so a caller can print them
// with the problems Validate names.
func TestLoadLeavesValidationToTheCaller(t *testing.T) {
	c, _ := mustLoad(t, []string{"--idle-timeout", "10s"}, nil)
	if c.IdleTimeout != 10*time.Second {
		t.Errorf("idle_timeout = %v", c.IdleTimeout)
	}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "idle_timeout") {
		t.Errorf("Validate() = %v, want an idle_timeout problem", err)
	}
}

func TestFlagErrors(t *testing.T) {
	if _, _, err := Load([]string{"-h"}, nil); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: err = %v, want flag.ErrHelp", err)
	}
	if _, _, err := Load([]string{"--no-such-flag"}, nil); err == nil {
		t.Error("unknown flag accepted")
	}
	if _, _, err := Load([]string{"stray"}, nil); err == nil {
		t.Error("stray argument accepted")
	}
	if _, _, err := Load([]string{"--max-frame-bytes", "x"}, nil); err == nil {
		t.Error("bad integer flag accepted")
	}
}

func TestEmptyFile(t *testing.T) {
	for _, content := range []string{"", "# only a comment\n"} {
		c, warnings := mustLoad(t, []string{"--config", writeFile(t, "c.yaml", content)}, nil)
		if len(warnings) > 0 || c.Listen != ":8080" {
			t.Errorf("%q: warnings %q, listen %q", content, warnings, c.Listen)
		}
	}
	if _, _, err := Load([]string{"--config", writeFile(t, "c.yaml", "- a\n- b\n")}, nil); err == nil {
		t.Error("a list as the whole file was accepted")
	}
}

func TestRegisterShowsEveryKey(t *testing.T) {
	c := Defaults()
	fs := flag.NewFlagSet("tidings", flag.ContinueOnError)
	c.Register(fs)
	var out strings.Builder
	fs.SetOutput(&out)
	fs.PrintDefaults()
	for i := range fields {
		if !strings.Contains(out.String(), "-"+fields[i].flag()) || !strings.Contains(out.String(), fields[i].env()) {
			t.Errorf("help lacks -%s or %s", fields[i].flag(), fields[i].env())
		}
	}
	if !strings.Contains(out.String(), "-config") || strings.Contains(out.String(), "PANIC") {
		t.Errorf("help:\n%s", out.String())
	}
	if f := fs.Lookup("listen"); f.DefValue != ":8080" {
		t.Errorf("listen default shown as %q", f.DefValue)
	}
}

func TestSuggest(t *testing.T) {
	if got := suggest("data-dir", fileKeys()); got != ` (did you mean "data_dir"?)` {
		t.Errorf("suggest = %q", got)
	}
	if got := suggest("completely_else", fileKeys()); got != "" {
		t.Errorf("suggest = %q, want none", got)
	}
}
