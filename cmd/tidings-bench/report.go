//go:build linux

package main

// Figures and their printing: one JSON line, then a table for people.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
)

// percentile is the nearest-rank p-th percentile (0 < p ≤ 100) of sorted
// values; 0 when there are none.
func percentile(sorted []int64, p float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	r := int(math.Ceil(p / 100 * float64(len(sorted))))
	r = min(max(r, 1), len(sorted))
	return sorted[r-1]
}

// latencies summarises nanosecond samples in milliseconds.
type latencies struct {
	P50 float64 `json:"p50_ms"`
	P95 float64 `json:"p95_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

// summarise sorts v in place and returns its percentiles.
func summarise(v []int64) latencies {
	slices.Sort(v)
	var l latencies
	if len(v) == 0 {
		return l
	}
	l.P50 = ms(percentile(v, 50))
	l.P95 = ms(percentile(v, 95))
	l.P99 = ms(percentile(v, 99))
	l.Max = ms(v[len(v)-1])
	return l
}

func (l latencies) String() string {
	return fmt.Sprintf("p50 %.2f  p95 %.2f  p99 %.2f  max %.2f ms", l.P50, l.P95, l.P99, l.Max)
}

// ms turns nanoseconds into milliseconds, three decimals.
func ms(ns int64) float64 { return round3(float64(ns) / 1e6) }

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

// perUnit is the server's CPU microseconds per unit of work, or nil when
// it was not measured (no --pid) or there was no work.
// seconds is a CPU time for the JSON line, or nil when it was not read.
func seconds(cpuSeconds float64, ok bool) *float64 {
	if !ok {
		return nil
	}
	v := round3(cpuSeconds)
	return &v
}

func perUnit(cpuSeconds float64, ok bool, units int64) *float64 {
	if !ok || units <= 0 {
		return nil
	}
	v := round3(cpuSeconds * 1e6 / float64(units))
	return &v
}

func optional(v *float64, format string) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf(format, *v)
}

// findInt finds `"key":` in a JSON text and reads the integer after it,
// without decoding the text. key is given with its quotes and colon.
func findInt(b, key []byte) (int64, bool) {
	i := bytes.Index(b, key)
	if i < 0 {
		return 0, false
	}
	b = b[i+len(key):]
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r') {
		b = b[1:]
	}
	neg := false
	if len(b) > 0 && b[0] == '-' {
		neg = true
		b = b[1:]
	}
	var v int64
	d := 0
	for ; d < len(b) && b[d] >= '0' && b[d] <= '9'; d++ {
		x := int64(b[d] - '0')
		if v > (math.MaxInt64-x)/10 {
			return 0, false // out of range
		}
		v = v*10 + x
	}
	if d == 0 {
		return 0, false
	}
	if neg {
		v = -v
	}
	return v, true
}

// emit prints the JSON line, then the table.
func emit(res any, rows [][2]string) {
	line, err := json.Marshal(res)
	if err != nil {
		fmt.Fprintln(os.Stderr, "encode result:", err)
		os.Exit(1)
	}
	fmt.Println(string(line))
	fmt.Println()
	w := 15
	for _, r := range rows {
		w = max(w, len(r[0]))
	}
	for _, r := range rows {
		fmt.Printf("%-*s  %s\n", w, r[0], r[1])
	}
}

// otherLoad tells how much CPU other processes took during the window.
func otherLoad(other *float64, window float64) string {
	if other == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f CPU-s by other processes over %.2f s (%d CPUs)", *other, window, runtime.NumCPU())
}
