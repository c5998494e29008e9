package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildBinary builds the tidings binary once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tidings")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

type proc struct {
	cmd *exec.Cmd
	out *bytes.Buffer
}

func startProc(t *testing.T, bin string, env []string) *proc {
	t.Helper()
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, out: &out}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return p
}

func waitHealthy(t *testing.T, base string, p *proc) {
	t.Helper()
	for i := 0; i < 100; i++ {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("server not healthy; output:\n%s", p.out.String())
}

// A notification acknowledged with 202 survives a SIGKILL right after.
func TestAcknowledgedNotificationSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	addr := freeAddr(t)
	base := "http://" + addr
	env := []string{"TIDINGS_LISTEN=" + addr, "TIDINGS_DATA_DIR=" + t.TempDir(),
		"TIDINGS_JWT_SECRET=kill-secret", "TIDINGS_API_KEYS=k1", "TIDINGS_ADMIN_KEY=a1"}
	p := startProc(t, bin, env)
	waitHealthy(t, base, p)

	var ids []string
	for i := 0; i < 20; i++ {
		body := fmt.Sprintf(`{"users":["1001"],"type":"invoice.ready","title":"Invoice %d"}`, i)
		req, _ := http.NewRequest("POST", base+"/v1/notifications", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer k1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var r struct{ IDs []string }
		_ = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if resp.StatusCode != 202 || len(r.IDs) != 1 {
			t.Fatalf("publish %d: %d", i, resp.StatusCode)
		}
		ids = append(ids, r.IDs[0])
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Wait()

	p2 := startProc(t, bin, env)
	waitHealthy(t, base, p2)
	// tidings publish talks to the running node with the configured key.
	var pub bytes.Buffer
	pc := exec.Command(bin, "publish", "--user", "1001", "--title", "From the CLI", "--data", `{"k":1}`)
	pc.Env = append(os.Environ(), env...)
	pc.Stdout, pc.Stderr = &pub, &pub
	if err := pc.Run(); err != nil || !strings.Contains(pub.String(), `"ids"`) {
		t.Fatalf("tidings publish: %v %s", err, pub.String())
	}
	var pr struct{ IDs []string }
	_ = json.Unmarshal(pub.Bytes(), &pr)
	ids = append(ids, pr.IDs...)
	var tok bytes.Buffer
	tc := exec.Command(bin, "token", "--user", "1001")
	tc.Env = append(os.Environ(), env...)
	tc.Stdout = &tok
	if err := tc.Run(); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", base+"/v1/me/notifications?limit=100", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(tok.String()))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var page struct {
		Items []struct{ ID string }
	}
	_ = json.NewDecoder(resp.Body).Decode(&page)
	got := map[string]bool{}
	for _, it := range page.Items {
		got[it.ID] = true
	}
	for _, id := range ids {
		if !got[id] {
			t.Fatalf("acknowledged notification %s lost after SIGKILL (have %d of %d)", id, len(got), len(ids))
		}
	}
}

// SIGTERM drains and exits 0.
func TestSIGTERMExitsZero(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	addr := freeAddr(t)
	p := startProc(t, bin, []string{"TIDINGS_LISTEN=" + addr, "TIDINGS_DATA_DIR=" + t.TempDir()})
	waitHealthy(t, "http://"+addr, p)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, p.out.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("did not exit after SIGTERM")
	}
	// The first start generated secrets and said where.
	if !strings.Contains(p.out.String(), "secrets") {
		t.Fatalf("no word about generated secrets:\n%s", p.out.String())
	}
}

func TestTokenAndConfigCommands(t *testing.T) {
	env := []string{"TIDINGS_JWT_SECRET=s", "TIDINGS_DATA_DIR=" + t.TempDir()}
	var out, errb bytes.Buffer
	if code := run([]string{"token", "--user", "42"}, env, &out, &errb); code != 0 || strings.Count(out.String(), ".") != 2 {
		t.Fatalf("token: %d %q %q", code, out.String(), errb.String())
	}
	out.Reset()
	if code := run([]string{"config", "--listen", ":9999"}, env, &out, &errb); code != 0 || !strings.Contains(out.String(), ":9999") || strings.Contains(out.String(), "jwt_secret: s\n") {
		t.Fatalf("config: %d %q", code, out.String())
	}
	if code := run([]string{"token"}, env, &out, &errb); code != 2 {
		t.Fatalf("token without user: %d", code)
	}
	if code := run([]string{"nope"}, env, &out, &errb); code != 2 {
		t.Fatalf("unknown command: %d", code)
	}
}
