package config

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// effective returns c.WriteEffective's output; t may be nil outside tests.
func effective(t testing.TB, c *Config, reveal bool) string {
	var b bytes.Buffer
	if err := c.WriteEffective(&b, reveal); err != nil {
		if t == nil {
			panic(err)
		}
		t.Fatal(err)
	}
	return b.String()
}

func TestWriteEffectiveGolden(t *testing.T) {
	c := Defaults()
	got := effective(t, &c, false)
	golden := filepath.Join("testdata", "effective.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("WriteEffective(Defaults()) differs from %s (run with -update if intended):\n%s", golden, got)
	}
}

func TestWriteEffectiveRedacts(t *testing.T) {
	c := Defaults()
	c.JWTSecret = "jwt-s3cret"
	c.APIKeys = []string{"api-s3cret-1", "api-s3cret-2"}
	c.AdminKey = "admin-s3cret"
	c.Store = "postgres://tidings:db-s3cret@db/tidings"
	c.Ingest = []Ingest{{Name: "q", Type: "amqp", URL: "amqp://guest:mq-s3cret@mq/", Queue: "n"}}

	hidden := effective(t, &c, false)
	if strings.Contains(hidden, "s3cret") {
		t.Errorf("secret in redacted output:\n%s", hidden)
	}
	for _, want := range []string{"jwt_secret: <set>", "admin_key: <set>", "api_keys:\n  - <set>\n  - <set>\n", "postgres://tidings:xxxxx@db/tidings"} {
		if !strings.Contains(hidden, want) {
			t.Errorf("redacted output lacks %q:\n%s", want, hidden)
		}
	}

	shown := effective(t, &c, true)
	for _, want := range []string{"jwt-s3cret", "api-s3cret-1", "api-s3cret-2", "admin-s3cret", "db-s3cret", "mq-s3cret"} {
		if !strings.Contains(shown, want) {
			t.Errorf("revealed output lacks %q", want)
		}
	}
}

// The printed config is a valid config file that loads back to the same
// values: what `tidings config` prints can be saved and used.
func TestWriteEffectiveRoundTrip(t *testing.T) {
	c := Defaults()
	c.PathPrefix = "/websocket"
	c.APIKeys = []string{"k1", "k2"}
	c.TokenCookie = "true" // must come back as a string, not a boolean
	c.SubscribeWebhookURL = "https://app.example/sub"
	c.Namespaces["post"] = Namespace{Policy: "webhook", HistorySize: 20, HistoryTTL: 90 * 60e9}
	c.Ingest = []Ingest{{Name: "m", Type: "mqtt", URL: "tcp://mq:1883", Topic: "notification{user}", ClientID: "t"}}
	text := effective(t, &c, true)

	back, warnings := mustLoad(t, []string{"--config", writeFile(t, "c.yaml", text)}, nil)
	if len(warnings) > 0 {
		t.Errorf("warnings: %q", warnings)
	}
	if again := effective(t, back, true); again != text {
		t.Errorf("round trip changed the config:\n%s\nthen\n%s", text, again)
	}
}
