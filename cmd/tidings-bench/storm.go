//go:build linux

package main

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/tidings/tidings/internal/hub"
)

type stormResult struct {
	Scenario         string         `json:"scenario"`
	Transport        string         `json:"transport"`
	Conns            int            `json:"conns"`
	Concurrency      int            `json:"concurrency"`
	ConnectsPerSec   float64        `json:"connects_per_s"`
	ConnectErrors    int            `json:"connect_errors"`
	ReconnectsPerSec float64        `json:"reconnects_per_s"`
	Reconnected      int            `json:"reconnected"`
	Errors           int            `json:"errors"`
	ErrorKinds       map[string]int `json:"error_kinds,omitempty"`
	FirstError       string         `json:"first_error,omitempty"`
	ReconnectLatency latencies      `json:"reconnect_latency"`
	ServerDrainS     float64        `json:"server_drain_s,omitempty"`
	ServerCPUSec     *float64       `json:"server_cpu_s,omitempty"`
	ServerCPUPerConn *float64       `json:"server_cpu_us_per_reconnect,omitempty"`
	ClientCPUPerConn *float64       `json:"client_cpu_us_per_reconnect,omitempty"`
	WindowS          float64        `json:"window_s"`
	OtherCPUSec      *float64       `json:"other_cpu_s,omitempty"`
	serverFigures
}

func runStorm(args []string) error {
	fs, cm, n := newFlags("storm", 10000)
	settle := fs.Duration("settle", time.Second, "wait after closing when --pid is not given")
	tf := addTransportFlags(fs)
	_ = fs.Parse(args)
	if err := cm.finish(*n, false); err != nil {
		return err
	}
	if err := tf.apply(cm, ""); err != nil {
		return err
	}
	watchdog(2*dialBound(cm, *n) + cm.timeout + *settle + 2*time.Minute)
	res, err := storm(cm, *n, *settle)
	if err != nil {
		return err
	}
	kinds := "-"
	if len(res.ErrorKinds) > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(res.ErrorKinds)) {
			parts = append(parts, fmt.Sprintf("%s: %d", k, res.ErrorKinds[k]))
		}
		kinds = strings.Join(parts, ", ")
	}
	emit(res, [][2]string{
		{"connections", fmt.Sprintf("%d %s, %d at once", res.Conns, res.Transport, res.Concurrency)},
		{"first connect", fmt.Sprintf("%.0f connects/s (%d errors)", res.ConnectsPerSec, res.ConnectErrors)},
		{"server drained", fmt.Sprintf("%.2f s after the close", res.ServerDrainS)},
		{"reconnect", fmt.Sprintf("%.0f reconnects/s (%d of %d)", res.ReconnectsPerSec, res.Reconnected, res.Conns)},
		{"reconnect time", res.ReconnectLatency.String()},
		{"errors", fmt.Sprintf("%d (%s)", res.Errors, kinds)},
		{"server CPU", optional(res.ServerCPUPerConn, "%.1f µs per reconnect")},
		{"client CPU", optional(res.ClientCPUPerConn, "%.1f µs per reconnect (the load tool)")},
		{"other load", otherLoad(res.OtherCPUSec, res.WindowS)},
		{"server RSS", fmt.Sprintf("%.1f MiB, %d threads", res.RSSMiB, res.Threads)},
	})
	if res.Errors > 0 || res.ConnectErrors > 0 {
		return errFailed
	}
	return nil
}

func storm(cm *common, n int, settle time.Duration) (*stormResult, error) {
	tokens, err := mintTokens(cm.secret, 0, n)
	if err != nil {
		return nil, err
	}
	baseFDs := -1
	if cm.pid != 0 {
		if baseFDs, err = fdCount(cm.pid); err != nil {
			return nil, fmt.Errorf("server descriptors: %w", err)
		}
	}
	res := &stormResult{Scenario: "storm", Transport: transportName(cm), Conns: n, Concurrency: cm.conc}

	first := dialAll(cm, tokens, true, nil)
	res.ConnectsPerSec = round3(first.perSecond())
	res.ConnectErrors = first.errs

	// Everyone leaves at once, the way a restart or a network blip does it
	// (a WebSocket says so with a close frame; an SSE stream just closes).
	// Nothing is published, so no SSE stream has an id to resume from: its
	// reconnect is a plain GET, without Last-Event-ID.
	bye := clientFrame(hub.OpcodeClose, []byte{0x03, 0xe9}) // 1001 going away
	closedAt := time.Now()
	for _, c := range first.conns {
		if c != nil {
			if !c.sse {
				_, _ = c.Write(bye)
			}
			_ = c.Close()
		}
	}
	if baseFDs >= 0 {
		// The server has let go when its descriptors are back to where they
		// were (a few may be in flux).
		drained := waitFor(cm.timeout, func() bool {
			fds, err := fdCount(cm.pid)
			return err != nil || fds <= baseFDs+8
		})
		res.ServerDrainS = round3(time.Since(closedAt).Seconds())
		if !drained {
			fds, _ := fdCount(cm.pid)
			return nil, fmt.Errorf("server still holds %d descriptors (%d before) %v after the close", fds, baseFDs, cm.timeout)
		}
	} else {
		time.Sleep(settle)
	}

	srvCPU, cliCPU, mach := newCPUMeter(cm.pid), newCPUMeter(os.Getpid()), newMachineMeter()
	srvCPU.start()
	cliCPU.start()
	mach.start()
	again := dialAll(cm, tokens, true, nil)
	cpuS, cpuOK := srvCPU.seconds()
	cliS, cliOK := cliCPU.seconds()
	res.OtherCPUSec, res.WindowS = mach.others(cpuS, cpuOK, cliS, cliOK)
	defer again.closeAll()
	res.serverFigures = readServerFigures(cm.pid)
	res.Reconnected = again.ok
	res.ReconnectsPerSec = round3(again.perSecond())
	res.Errors = again.errs
	if again.errs > 0 {
		res.ErrorKinds = again.errKinds
		res.FirstError = again.firstErr.Error()
	}
	if res.FirstError == "" && first.firstErr != nil {
		res.FirstError = "first connect: " + first.firstErr.Error()
	}
	res.ReconnectLatency = summarise(again.latency)
	res.ServerCPUSec = seconds(cpuS, cpuOK)
	res.ServerCPUPerConn = perUnit(cpuS, cpuOK, int64(again.ok))
	res.ClientCPUPerConn = perUnit(cliS, cliOK, int64(again.ok))
	return res, nil
}
