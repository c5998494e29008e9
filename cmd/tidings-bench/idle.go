package main

import (
	"fmt"
	"time"
)

type idleResult struct {
	Scenario       string  `json:"scenario"`
	Transport      string  `json:"transport"`
	Conns          int     `json:"conns"`
	ConnectsPerSec float64 `json:"connects_per_s"`
	RSSBefore      int64   `json:"rss_before"`
	RSSAfter       int64   `json:"rss_after"`
	KiBPerConn     float64 `json:"kib_per_conn"`
	Threads        int     `json:"server_threads"`
}

func runIdle(args []string) error {
	fs, cm, n := newFlags("idle", 10000)
	settle := fs.Duration("settle", 3*time.Second, "wait before reading memory")
	tf := addTransportFlags(fs)
	_ = fs.Parse(args)
	if err := tf.apply(cm, ""); err != nil {
		return err
	}
	if cm.pid == 0 || cm.secret == "" {
		return usageError("--pid and --secret are required")
	}
	if err := cm.finish(*n, false); err != nil {
		return err
	}
	watchdog(time.Duration(*n)*cm.timeout/time.Duration(cm.conc) + *settle + 2*time.Minute)
	res, err := idle(cm, *n, *settle)
	if err != nil {
		return err
	}
	res.Transport = tf.name
	emit(res, [][2]string{
		{"connections", fmt.Sprint(res.Conns) + " " + res.Transport},
		{"connects/s", fmt.Sprintf("%.0f", res.ConnectsPerSec)},
		{"server RSS", fmt.Sprintf("%.1f MiB -> %.1f MiB", float64(res.RSSBefore)/(1<<20), float64(res.RSSAfter)/(1<<20))},
		{"RSS per conn", fmt.Sprintf("%.2f KiB", res.KiBPerConn)},
	})
	return nil
}

func idle(cm *common, n int, settle time.Duration) (idleResult, error) {
	tokens, err := mintTokens(cm.secret, n)
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
	after, threads, err := procStatus(cm.pid)
	if err != nil {
		return idleResult{}, err
	}
	return idleResult{Scenario: "idle", Conns: n, ConnectsPerSec: d.perSecond(),
		RSSBefore: before, RSSAfter: after, KiBPerConn: float64(after-before) / 1024 / float64(n), Threads: threads}, nil
}
