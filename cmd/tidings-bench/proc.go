//go:build linux

package main

// Figures read from /proc: a process's memory, threads, CPU time and open
// descriptors.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// procStatus reads VmRSS (bytes) and Threads of a process.
func procStatus(pid int) (rss int64, threads int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			rss = kb * 1024
		case "Threads:":
			threads, _ = strconv.Atoi(f[1])
		}
	}
	return rss, threads, nil
}

// parseStatTicks reads utime and stime (fields 14 and 15, in clock ticks)
// from the text of /proc/PID/stat. The command name (field 2) may hold
// spaces and parentheses, so fields are counted from its last ')'.
func parseStatTicks(b []byte) (utime, stime int64, err error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so field k is f[k-3].
	if len(f) < 13 {
		return 0, 0, errors.New("stat: too few fields")
	}
	if utime, err = strconv.ParseInt(f[11], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("stat: utime: %w", err)
	}
	if stime, err = strconv.ParseInt(f[12], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("stat: stime: %w", err)
	}
	return utime, stime, nil
}

// cpuTicks is a process's user plus system time, in clock ticks.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	u, s, err := parseStatTicks(b)
	return u + s, err
}

// atClkTck is the auxiliary vector entry holding sysconf(_SC_CLK_TCK).
const atClkTck = 17

// parseAuxvClkTck finds AT_CLKTCK in the text of /proc/self/auxv (pairs of
// native 64-bit words, ended by AT_NULL).
func parseAuxvClkTck(b []byte) (int64, bool) {
	for len(b) >= 16 {
		k := binary.NativeEndian.Uint64(b)
		v := binary.NativeEndian.Uint64(b[8:])
		if k == 0 {
			break
		}
		if k == atClkTck && v > 0 {
			return int64(v), true
		}
		b = b[16:]
	}
	return 0, false
}

// clockTicks is the kernel's clock tick rate for /proc times (100 on
// every common Linux; read from the auxiliary vector when it is there).
func clockTicks() int64 {
	if b, err := os.ReadFile("/proc/self/auxv"); err == nil {
		if v, ok := parseAuxvClkTck(b); ok {
			return v
		}
	}
	return 100
}

// fdCount is how many descriptors a process has open.
func fdCount(pid int) (int, error) {
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(es), err
}

// cpuMeter measures the CPU time a process uses between start and stop.
// With pid 0 it measures nothing.
type cpuMeter struct {
	pid int
	tck int64
	t0  int64
	ok  bool
}

func newCPUMeter(pid int) *cpuMeter { return &cpuMeter{pid: pid, tck: clockTicks()} }

func (m *cpuMeter) start() {
	if m.pid == 0 {
		return
	}
	t, err := cpuTicks(m.pid)
	m.t0, m.ok = t, err == nil
}

// seconds is the CPU time since start; ok is false when it could not be
// read.
func (m *cpuMeter) seconds() (float64, bool) {
	if !m.ok {
		return 0, false
	}
	t, err := cpuTicks(m.pid)
	if err != nil {
		return 0, false
	}
	return float64(t-m.t0) / float64(m.tck), true
}

// parseProcStatBusy reads the busy time of all CPUs from the text of
// /proc/stat: user, nice, system, irq, softirq and steal of its "cpu"
// line (idle and iowait left out; guest time is already in user).
func parseProcStatBusy(b []byte) (int64, error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, errors.New("/proc/stat: no cpu line")
	}
	var busy int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %w", err)
		}
		busy += v
	}
	return busy, nil
}

// machineMeter measures how busy the whole machine is, to tell how much
// of it went to processes other than the server and this client (the
// machines these run on are shared).
type machineMeter struct {
	tck int64
	t0  int64
	ok  bool
	w0  time.Time
}

func newMachineMeter() *machineMeter { return &machineMeter{tck: clockTicks()} }

func machineBusy() (int64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	return parseProcStatBusy(b)
}

func (m *machineMeter) start() {
	t, err := machineBusy()
	m.t0, m.ok, m.w0 = t, err == nil, time.Now()
}

// others is the CPU time (seconds) the machine spent outside the server
// and the client since start, and the wall time passed; nil without a
// server to subtract.
func (m *machineMeter) others(server float64, serverOK bool, client float64, clientOK bool) (*float64, float64) {
	wall := round3(time.Since(m.w0).Seconds())
	if !m.ok || !serverOK || !clientOK {
		return nil, wall
	}
	t, err := machineBusy()
	if err != nil {
		return nil, wall
	}
	v := round3(max(float64(t-m.t0)/float64(m.tck)-server-client, 0))
	return &v, wall
}
