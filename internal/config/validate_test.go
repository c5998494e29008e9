package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// problemsOf returns the lines of c.Validate()'s error.
func problemsOf(t testing.TB, c *Config) []string {
	t.Helper()
	err := c.Validate()
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

func TestValidateNamesEveryProblem(t *testing.T) {
	c := Defaults()
	c.Listen = "8080"
	c.PingInterval = 30 * time.Second
	c.IdleTimeout = 30 * time.Second
	c.ChannelsDefault = "webhook"
	c.Store = "mysql://u:hunter2@db/x"
	c.Broker = "kafka://k:9092"
	c.MaxFrameBytes = -1
	c.MaxConnsPerUser = -2
	c.MinWriteInterval = 2 * time.Second
	c.JWTPublicKey = filepath.Join(t.TempDir(), "missing.pem")
	c.LogLevel = "verbose"
	c.AllowedOrigins = []string{"app.example.com"}
	c.Namespaces["post"] = Namespace{Policy: "friends"}
	c.Namespaces["chat"] = Namespace{Policy: "webhook", HistorySize: -1}

	problems := problemsOf(t, &c)
	for _, key := range []string{
		"listen:", "idle_timeout:", "channels_default:", "store:", "broker:",
		"max_frame_bytes:", "max_conns_per_user:", "min_write_interval:", "jwt_public_key:", "log_level:",
		"allowed_origins:", "namespaces.post: policy", "namespaces.chat: policy webhook needs",
		"namespaces.chat: history_size",
	} {
		found := false
		for _, p := range problems {
			found = found || strings.HasPrefix(p, key)
		}
		if !found {
			t.Errorf("no problem starting with %q in:\n%s", key, strings.Join(problems, "\n"))
		}
	}
	if got := strings.Join(problems, "\n"); strings.Contains(got, "hunter2") {
		t.Errorf("a password leaked into the error:\n%s", got)
	}
}

func TestValidateAccepts(t *testing.T) {
	c := Defaults()
	c.Listen = "127.0.0.1:0"
	c.Store = "postgres://u:p@db:5432/tidings?sslmode=disable"
	c.Broker = "redis://cache:6379/0"
	c.ChannelsDefault = "claim"
	c.AllowedOrigins = []string{"*", "https://app.example.com", "http://localhost:5173"}
	c.SubscribeWebhookURL = "https://app.example.com/subscribe"
	c.Namespaces["chat"] = Namespace{Policy: "webhook", HistorySize: 100, HistoryTTL: time.Hour}
	c.Namespaces[""] = Namespace{Policy: "deny"}
	c.PathPrefix = "/websocket"
	c.JWTPublicKey = writeFile(t, "key.pem", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
	if p := problemsOf(t, &c); p != nil {
		t.Errorf("problems with a valid config:\n%s", strings.Join(p, "\n"))
	}
	c.Broker = "nats://nats:4222"
	if p := problemsOf(t, &c); p != nil {
		t.Errorf("nats broker refused:\n%s", strings.Join(p, "\n"))
	}
}

func TestValidatePaths(t *testing.T) {
	c := Defaults()
	c.WSPath = "v1/ws"
	c.PollPath = c.SSEPath
	c.JWTPublicKey = writeFile(t, "key.pem", "not a key")
	c.Namespaces["user"] = Namespace{Policy: "public"}
	c.Namespaces["a:b"] = Namespace{}
	got := strings.Join(problemsOf(t, &c), "\n")
	for _, want := range []string{"ws_path:", "poll_path:", "jwt_public_key:", "namespaces.user:", "namespaces.a:b:"} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q problem in:\n%s", want, got)
		}
	}
}

func TestValidateIngest(t *testing.T) {
	c := Defaults()
	c.Ingest = []Ingest{
		{Name: "a", Type: "amqp", URL: "amqp://localhost/", Queue: "q"},                     // fine
		{Name: "a", Type: "mqtt", URL: "tcp://localhost:1883", Topic: "notification{user}"}, // duplicate name
		{Name: "k", Type: "kafka", URL: "kafka://localhost"},                                // unknown type
		{Type: "nats", Subject: "s"},                                                        // no name, no url
		{Name: "r", Type: "redis-stream", URL: "redis://localhost", Kind: "log", Prefetch: -1},
	}
	got := problemsOf(t, &c)
	want := []string{
		`ingest[1] (a): name "a" is already used by ingest[0]`,
		`ingest[2] (k): type "kafka" is not amqp, mqtt, nats or redis-stream`,
		`ingest[3]: name is required`,
		`ingest[3]: url is required`,
		`ingest[4] (r): stream is required for type redis-stream`,
		`ingest[4] (r): kind "log" is not notification or event`,
		`ingest[4] (r): prefetch must not be negative`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestIngestFromFileIsValidated(t *testing.T) {
	file := writeFile(t, "c.yaml", `
ingest:
  - name: one
    type: nats
    url: nats://127.0.0.1:4222
    subject: tidings.notifications
  - name: one
    type: sqs
    url: https://sqs.example
`)
	c, _ := mustLoad(t, []string{"--config", file}, nil)
	err := c.Validate()
	if err == nil {
		t.Fatal("duplicate name and unknown type accepted")
	}
	for _, want := range []string{`name "one" is already used`, `type "sqs"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestPersonalNamespaceHasNoHistory(t *testing.T) {
	c := Defaults()
	c.Namespaces = map[string]Namespace{"user": {HistorySize: 10}}
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "history cannot be set") {
		t.Fatalf("Validate: %v", err)
	}
}
