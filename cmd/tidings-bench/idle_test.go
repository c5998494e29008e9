//go:build linux

package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/tidings/tidings/internal/config"
	"github.com/tidings/tidings/internal/server"
)

// TestMain lets idle --procs start this test binary as its child
// processes: with childEnv set it is the load tool.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// idle --procs 3 against a real server in this process: every child
// holds its share under distinct users at once, and the memory is read
// while they do.
func TestIdleSplitAcrossProcesses(t *testing.T) {
	const secret = "idle-split-secret"
	srv := startServer(t, secret, "")

	fs, cm, _ := newFlags("idle", 0)
	tf := addTransportFlags(fs)
	if err := fs.Parse([]string{"-url=ws://" + srv.Addr().String() + "/v1/ws", "-secret=" + secret, "-c=4", "-readers=1"}); err != nil {
		t.Fatal(err)
	}
	if err := tf.apply(cm, ""); err != nil {
		t.Fatal(err)
	}
	if err := cm.finish(20, false); err != nil {
		t.Fatal(err)
	}
	cm.pid = os.Getpid()

	const n = 20
	online := make(chan int, 1)
	go func() { // read the server while the children hold their connections
		deadline := time.Now().Add(30 * time.Second)
		var users int
		for time.Now().Before(deadline) {
			st := srv.Stats().(map[string]any)
			if users = st["users_online"].(int); users == n {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		online <- users
	}()
	res, err := idleSplit(fs, cm, n, 3, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.Conns != n || res.Procs != 3 || res.ConnectsPerSec <= 0 || res.RSSAfter <= 0 {
		t.Fatalf("result %+v", res)
	}
	if users := <-online; users != n {
		t.Fatalf("%d distinct users online at once, want %d", users, n)
	}
	// The children closed their connections when their stdin closed.
	deadline := time.Now().Add(10 * time.Second)
	for srv.Stats().(map[string]any)["users_online"].(int) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("connections still open after the children ended")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startServer runs a Tidings server with the embedded defaults in this
// process until the test ends.
func startServer(t *testing.T, secret, apiKey string) *server.Server {
	t.Helper()
	cfg := config.Defaults()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.JWTSecret = secret
	if apiKey != "" {
		cfg.APIKeys = []string{apiKey}
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, &cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return srv
}

// personal against a real server in this process, one notification per
// request and in batches: every acknowledged notification is delivered,
// over the load tool's own HTTP client.
func TestPersonalAgainstServer(t *testing.T) {
	const secret, key = "personal-secret", "personal-key"
	srv := startServer(t, secret, key)
	for _, batch := range []int{1, 5} {
		fs, cm, _ := newFlags("personal", 0)
		tf := addTransportFlags(fs)
		if err := fs.Parse([]string{"-url=ws://" + srv.Addr().String() + "/v1/ws", "-secret=" + secret, "-api-key=" + key, "-c=4", "-readers=1"}); err != nil {
			t.Fatal(err)
		}
		if err := tf.apply(cm, ""); err != nil {
			t.Fatal(err)
		}
		if err := cm.finish(10, true); err != nil {
			t.Fatal(err)
		}
		cm.timeout = 10 * time.Second
		warmup := time.Duration(batch-1) * 50 * time.Millisecond // none, then 200 ms
		res, err := personal(cm, 10, 200, warmup, 500*time.Millisecond, 4, batch)
		if err != nil {
			t.Fatal(err)
		}
		// Everything sent, the warm-up's too, is delivered; the figures
		// cover the window.
		if res.HTTPErrors != 0 || res.Acknowledged != res.Sent || res.Sent < 50+int64(40*warmup.Seconds()*float64(batch)) ||
			res.Delivered != res.Acknowledged || res.WarmupS != warmup.Seconds() ||
			res.Latency.P50 <= 0 || res.AchievedPerSec <= 0 || res.AchievedPerSec > 400 {
			t.Fatalf("batch %d: %+v", batch, res)
		}
	}
}

// cluster with --api on the subscribers' own node: both runs deliver
// everything, and the tool says nothing crossed between nodes.
func TestClusterAgainstServer(t *testing.T) {
	const secret, key = "cluster-secret", "cluster-key"
	srv := startServer(t, secret, key)
	fs, cm, _ := newFlags("cluster", 0)
	tf := addTransportFlags(fs)
	if err := fs.Parse([]string{"-url=ws://" + srv.Addr().String() + "/v1/ws", "-secret=" + secret, "-api-key=" + key, "-c=4", "-readers=1"}); err != nil {
		t.Fatal(err)
	}
	if err := cm.finish(10, true); err != nil {
		t.Fatal(err)
	}
	if err := tf.apply(cm, "channel=bench%3Aall"); err != nil {
		t.Fatal(err)
	}
	cm.timeout = 10 * time.Second
	remote, err := parseAPI("http://" + srv.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	res, err := cluster(cm, remote, 10, 5, 50, "bench:all", 4)
	if err != nil {
		t.Fatal(err)
	}
	if !res.SameNode || res.Local.Scenario != "cluster-local" || res.Remote.Scenario != "cluster-remote" {
		t.Fatalf("result %+v", res)
	}
	for _, r := range []*broadcastResult{res.Local, res.Remote} {
		if r.Deliveries != 50 || r.Completeness != 1 || r.PublishErrors != 0 || r.Duplicates != 0 {
			t.Fatalf("%s: %+v", r.Scenario, r)
		}
	}
}
