//go:build linux

package main

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// clusterResult is broadcast run twice against the same node of
// subscribers (--url): once publishing on that node, once on another
// (--api). The difference between the two is the hop between nodes.
type clusterResult struct {
	Scenario  string           `json:"scenario"`
	Subscribe string           `json:"subscribe_url"`
	Publish   string           `json:"publish_api"`
	SameNode  bool             `json:"same_node"` // --api is the node of --url: nothing crosses
	Local     *broadcastResult `json:"local"`     // published on the subscribers' node
	Remote    *broadcastResult `json:"remote"`    // published on --api
	AddedP50  float64          `json:"added_p50_ms"`
	AddedP99  float64          `json:"added_p99_ms"`
}

func runCluster(args []string) error {
	fs, cm, n := newFlags("cluster", 2000)
	bf := addBcastFlags(fs, 200, 20)
	_ = fs.Parse(args)
	if cm.api == "" {
		return usageError("--api is required: the node to publish on (the subscribers are on the node of --url)")
	}
	remote, err := parseAPI(cm.api)
	if err != nil {
		return err
	}
	cm.api = "" // the local runs publish on the node of --url
	if err := cm.finish(*n, true); err != nil {
		return err
	}
	publishing, err := bf.apply(cm)
	if err != nil {
		return err
	}
	watchdog(2 * (dialBound(cm, *n) + 3*cm.timeout + publishing + time.Minute))
	res, err := cluster(cm, remote, *n, *bf.m, *bf.rate, *bf.channel, *bf.inflight)
	if err != nil {
		return err
	}
	same := ""
	if res.SameNode {
		same = " (the node of --url: nothing crosses between nodes)"
	}
	emit(res, [][2]string{
		{"subscribers", fmt.Sprintf("%d %s on %s", res.Local.Conns, res.Local.Transport, res.Subscribe)},
		{"publishes", fmt.Sprintf("%d at %g/s to %s, twice", res.Local.Publishes, res.Local.Rate, res.Local.Channel)},
		{"local", fmt.Sprintf("%s (%.4f delivered)", res.Local.Latency, res.Local.Completeness)},
		{"remote", fmt.Sprintf("%s (%.4f delivered) via %s%s", res.Remote.Latency, res.Remote.Completeness, res.Publish, same)},
		{"added by the hop", fmt.Sprintf("p50 %+.2f  p99 %+.2f ms", res.AddedP50, res.AddedP99)},
	})
	for _, r := range []*broadcastResult{res.Local, res.Remote} {
		if r.failed() {
			return errFailed
		}
	}
	return nil
}

// cluster runs broadcast publishing on the node of cm's --url, then on
// remote.
func cluster(cm *common, remote *url.URL, n, m int, rate float64, channel string, inflight int) (*clusterResult, error) {
	local := cm.apiURL
	res := &clusterResult{Scenario: "cluster", Subscribe: cm.rawURL, Publish: remote.String(),
		SameNode: strings.EqualFold(remote.Host, local.Host) && remote.Path == local.Path} // parseAPI trimmed both
	var err error
	if res.Local, err = broadcast(cm, n, m, rate, channel, inflight); err != nil {
		return nil, fmt.Errorf("publishing on %s: %w", local, err)
	}
	there := *cm
	there.api, there.apiURL = remote.String(), remote
	if res.Remote, err = broadcast(&there, n, m, rate, channel, inflight); err != nil {
		return nil, fmt.Errorf("publishing on %s: %w", remote, err)
	}
	res.Local.Scenario, res.Remote.Scenario = "cluster-local", "cluster-remote"
	res.AddedP50 = round3(res.Remote.Latency.P50 - res.Local.Latency.P50)
	res.AddedP99 = round3(res.Remote.Latency.P99 - res.Local.Latency.P99)
	return res, nil
}
