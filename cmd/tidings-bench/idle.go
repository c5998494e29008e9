//go:build linux

package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"
)

type idleResult struct {
	Scenario       string  `json:"scenario"`
	Transport      string  `json:"transport"`
	Conns          int     `json:"conns"`
	Procs          int     `json:"client_procs"`
	ConnectsPerSec float64 `json:"connects_per_s"`
	RSSBefore      int64   `json:"rss_before"`
	RSSAfter       int64   `json:"rss_after"`
	KiBPerConn     float64 `json:"kib_per_conn"`
	Threads        int     `json:"server_threads"`
}

// holdScenario is the hidden scenario a child of idle --procs runs.
const holdScenario = "hold"

func runIdle(args []string) error {
	fs, cm, n := newFlags("idle", 10000)
	settle := fs.Duration("settle", 3*time.Second, "wait before reading memory")
	procs := fs.Int("procs", 1, "client processes sharing the connections, each under its own open-file limit")
	tf := addTransportFlags(fs)
	_ = fs.Parse(args)
	if err := tf.apply(cm, ""); err != nil {
		return err
	}
	if cm.pid == 0 || cm.secret == "" {
		return usageError("--pid and --secret are required")
	}
	if *procs < 1 || *procs > *n {
		return usageError("--procs must be between 1 and --n")
	}
	if err := cm.finish((*n+*procs-1) / *procs, false); err != nil {
		return err
	}
	watchdog(time.Duration(*n)*cm.timeout/time.Duration(cm.conc) + *settle + 2*time.Minute)
	var res idleResult
	var err error
	if *procs == 1 {
		res, err = idle(cm, *n, *settle)
	} else {
		res, err = idleSplit(fs, cm, *n, *procs, *settle)
	}
	if err != nil {
		return err
	}
	res.Transport = tf.name
	emit(res, [][2]string{
		{"connections", fmt.Sprintf("%d %s from %d process(es)", res.Conns, res.Transport, res.Procs)},
		{"connects/s", fmt.Sprintf("%.0f", res.ConnectsPerSec)},
		{"server RSS", fmt.Sprintf("%.1f MiB -> %.1f MiB", float64(res.RSSBefore)/(1<<20), float64(res.RSSAfter)/(1<<20))},
		{"RSS per conn", fmt.Sprintf("%.2f KiB", res.KiBPerConn)},
	})
	return nil
}

func idle(cm *common, n int, settle time.Duration) (idleResult, error) {
	tokens, err := mintTokens(cm.secret, 0, n)
	if err != nil {
		return idleResult{}, err
	}
	before, _, err := procStatus(cm.pid)
	if err != nil {
		return idleResult{}, err
	}
	d := dialAll(cm, tokens, false, nil)
	defer d.closeAll()
	if d.firstErr != nil {
		return idleResult{}, d.firstErr
	}
	time.Sleep(settle)
	return idleDone(cm, n, 1, d.perSecond(), before)
}

// idleDone reads the server's memory with n connections open.
func idleDone(cm *common, n, procs int, perSec float64, before int64) (idleResult, error) {
	after, threads, err := procStatus(cm.pid)
	if err != nil {
		return idleResult{}, err
	}
	return idleResult{Scenario: "idle", Conns: n, Procs: procs, ConnectsPerSec: perSec,
		RSSBefore: before, RSSAfter: after, KiBPerConn: float64(after-before) / 1024 / float64(n), Threads: threads}, nil
}

// holdReport is what a child of idle --procs prints once its connections
// are open.
type holdReport struct {
	Conns   int     `json:"conns"`
	Seconds float64 `json:"seconds"`
	Error   string  `json:"error,omitempty"`
}

// idleSplit spreads n connections over procs child processes of this
// same binary (the hidden hold scenario, users numbered on from where
// the previous child's end), so that n may pass one process's open-file
// limit. The server's memory is read once every child holds its share.
func idleSplit(fs *flag.FlagSet, cm *common, n, procs int, settle time.Duration) (idleResult, error) {
	exe, err := os.Executable()
	if err != nil {
		return idleResult{}, err
	}
	before, _, err := procStatus(cm.pid)
	if err != nil {
		return idleResult{}, err
	}
	var shared []string // the flags given, but for those only idle has
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "n", "procs", "pid", "settle":
		default:
			shared = append(shared, "-"+f.Name+"="+f.Value.String())
		}
	})
	var stdins []io.Closer
	var cmds []*exec.Cmd
	defer func() {
		for _, in := range stdins {
			_ = in.Close() // the children close their connections and exit
		}
		for _, c := range cmds {
			_ = c.Wait()
		}
	}()
	outs := make([]*bufio.Reader, procs)
	first := 0
	for i := range procs {
		share := n / procs
		if i < n%procs {
			share++
		}
		args := append([]string{holdScenario}, shared...)
		args = append(args, fmt.Sprintf("-n=%d", share), fmt.Sprintf("-first=%d", first))
		first += share
		c := exec.Command(exe, args...)
		c.Env = append(os.Environ(), childEnv+"=1")
		c.Stderr = os.Stderr
		in, err := c.StdinPipe()
		if err != nil {
			return idleResult{}, err
		}
		out, err := c.StdoutPipe()
		if err != nil {
			return idleResult{}, err
		}
		if err := c.Start(); err != nil {
			return idleResult{}, fmt.Errorf("start client process: %w", err)
		}
		stdins = append(stdins, in)
		cmds = append(cmds, c)
		outs[i] = bufio.NewReader(out)
	}
	// The children dial at the same time: the connect rate is all the
	// connections over the longest child's dialing time.
	var held int
	var longest float64
	for i, out := range outs {
		line, err := out.ReadBytes('\n')
		if err != nil {
			return idleResult{}, fmt.Errorf("client process %d ended before it reported: %w", i, err)
		}
		var r holdReport
		if err := json.Unmarshal(line, &r); err != nil {
			return idleResult{}, fmt.Errorf("client process %d: %w", i, err)
		}
		if r.Error != "" {
			return idleResult{}, fmt.Errorf("client process %d: %s", i, r.Error)
		}
		held += r.Conns
		longest = max(longest, r.Seconds)
	}
	if held != n {
		return idleResult{}, fmt.Errorf("client processes hold %d connections of %d", held, n)
	}
	time.Sleep(settle)
	perSec := 0.0
	if longest > 0 {
		perSec = float64(n) / longest
	}
	return idleDone(cm, n, procs, perSec, before)
}

// childEnv marks a process started by idle --procs (tests run the
// binary's main when it is set).
const childEnv = "TIDINGS_BENCH_CHILD"

// runHold is one child of idle --procs: it opens its share of the
// connections, reports them on stdout, and holds them until its stdin
// closes.
func runHold(args []string) error {
	fs, cm, n := newFlags(holdScenario, 0)
	first := fs.Int("first", 0, "number of the first user")
	tf := addTransportFlags(fs)
	_ = fs.Parse(args)
	if err := tf.apply(cm, ""); err != nil {
		return err
	}
	if err := cm.finish(*n, false); err != nil {
		return err
	}
	tokens, err := mintTokens(cm.secret, *first, *n)
	if err != nil {
		return err
	}
	d := dialAll(cm, tokens, false, nil)
	defer d.closeAll()
	rep := holdReport{Conns: d.ok, Seconds: d.elapsed.Seconds()}
	if d.firstErr != nil {
		rep.Error = d.firstErr.Error()
	}
	if err := json.NewEncoder(os.Stdout).Encode(rep); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, os.Stdin); err != nil && !errors.Is(err, os.ErrClosed) {
		return err
	}
	return nil
}
