package config

import (
	"io"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tidings/tidings"
	"gopkg.in/yaml.v3"
)

// Redacted stands for a secret in WriteEffective's output.
const Redacted = "<set>"

// WriteEffective prints the configuration as a YAML file with the file's
// key names, in the order of the key table, so `tidings config` shows what a
// server will really run with and the output can be saved as a config file.
// Unless reveal is true, jwt_secret, api_keys and admin_key are shown as
// "<set>" (empty ones stay empty, so a missing secret is visible) and URL
// passwords are masked: the output is meant to be pasted into bug reports.
func (c *Config) WriteEffective(w io.Writer, reveal bool) error {
	root := &yaml.Node{Kind: yaml.MappingNode}
	for i := range fields {
		f := &fields[i]
		root.Content = append(root.Content, str(f.key), c.valueNode(f, reveal))
	}

	ns := &yaml.Node{Kind: yaml.MappingNode}
	names := make([]string, 0, len(c.Namespaces))
	for name := range c.Namespaces {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		n := c.Namespaces[name]
		ns.Content = append(ns.Content, str(name), &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
			str("policy"), str(string(n.Policy)),
			str("history_size"), intNode(int64(n.HistorySize)),
			str("history_ttl"), str(formatDuration(n.HistoryTTL)),
		}})
	}
	if len(ns.Content) == 0 {
		ns.Style = yaml.FlowStyle // "namespaces: {}"
	}
	root.Content = append(root.Content, str(keyNamespaces), ns)

	ingest := &yaml.Node{Kind: yaml.SequenceNode}
	for i := range c.Ingest {
		ingest.Content = append(ingest.Content, ingestNode(&c.Ingest[i], reveal))
	}
	if len(ingest.Content) == 0 {
		ingest.Style = yaml.FlowStyle // "ingest: []"
	}
	root.Content = append(root.Content, str(keyIngest), ingest)

	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return err
	}
	return enc.Close()
}

func (c *Config) valueNode(f *field, reveal bool) *yaml.Node {
	hide := func(s string) string {
		switch {
		case reveal || s == "":
			return s
		case f.secret:
			return Redacted
		case f.url:
			return redactURL(s)
		}
		return s
	}
	switch p := f.ptr(c).(type) {
	case *string:
		return str(hide(*p))
	case *tidings.Policy:
		return str(string(*p))
	case *[]string:
		n := &yaml.Node{Kind: yaml.SequenceNode}
		for _, s := range *p {
			n.Content = append(n.Content, str(hide(s)))
		}
		if len(n.Content) == 0 {
			n.Style = yaml.FlowStyle
		}
		return n
	case *bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(*p)}
	case *time.Duration:
		return str(formatDuration(*p))
	case *int:
		return intNode(int64(*p))
	case *int64:
		return intNode(*p)
	}
	return str(f.format(c))
}

// ingestNode prints one source with its set fields only: each type uses a
// few of them, and a dozen empty keys per source would hide those.
func ingestNode(in *Ingest, reveal bool) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode}
	v := reflect.ValueOf(*in)
	for i := range v.NumField() {
		key, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ",")
		switch fv := v.Field(i); fv.Kind() {
		case reflect.String:
			s := fv.String()
			if s == "" && key != "name" && key != "type" && key != "url" {
				continue
			}
			if key == "url" && !reveal {
				s = redactURL(s)
			}
			n.Content = append(n.Content, str(key), str(s))
		case reflect.Int:
			if fv.Int() != 0 {
				n.Content = append(n.Content, str(key), intNode(fv.Int()))
			}
		}
	}
	return n
}

func str(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}

func intNode(n int64) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatInt(n, 10)}
}
