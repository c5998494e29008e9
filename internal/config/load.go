package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load builds the configuration from args (flags, without the program
// name) and environ ("K=V" entries, as os.Environ returns them), reading the
// file named by --config or TIDINGS_CONFIG when there is one.
//
// Warnings (unknown TIDINGS_* variables, unknown file keys) are returned
// separately and never fail the load: an old variable left in a deployment
// should not stop a server from starting, but the operator should hear of
// it. The error names every value that could not be read (a file that is
// not YAML, "often" for a duration); when args ask for help it wraps
// flag.ErrHelp.
//
// Load does not call Validate: values that parse but are not acceptable
// (idle_timeout <= ping_interval) are the caller's to check, so a config
// command can still print what it loaded next to the problems.
func Load(args []string, environ []string) (*Config, []string, error) {
	// Flags are parsed first, into a scratch Config, because one of them
	// names the file; they are laid over file and environment at the end.
	flagged := Defaults()
	fs := flag.NewFlagSet("tidings", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // the caller decides how to report errors and help
	flagged.Register(fs)
	if err := fs.Parse(args); err != nil {
		return nil, nil, fmt.Errorf("flags: %w", err)
	}
	if fs.NArg() > 0 {
		return nil, nil, fmt.Errorf("flags: unexpected argument %q", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })

	env := envMap(environ)
	file := ""
	if given["config"] {
		file = fs.Lookup("config").Value.String()
	} else {
		file = env[EnvConfig]
	}

	cfg := Defaults()
	var warnings []string
	var errs []error
	if file != "" {
		w, err := cfg.loadFile(file)
		warnings = append(warnings, w...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	w, err := cfg.loadEnv(env)
	warnings = append(warnings, w...)
	if err != nil {
		errs = append(errs, err)
	}
	for i := range fields {
		if given[fields[i].flag()] {
			fields[i].copyTo(&cfg, &flagged)
		}
	}
	if len(errs) > 0 {
		return nil, warnings, errors.Join(errs...)
	}
	cfg.normalize()
	return &cfg, warnings, nil
}

// envMap keeps the TIDINGS_ entries of environ; a later duplicate wins, as
// it does for a process's own getenv.
func envMap(environ []string) map[string]string {
	m := map[string]string{}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if ok && strings.HasPrefix(k, EnvPrefix) {
			m[k] = v
		}
	}
	return m
}

// loadEnv applies the TIDINGS_* variables. An empty value counts as unset:
// compose files and systemd units often pass `TIDINGS_X=${X}` with X empty,
// and that should mean "not configured", not "configured to nothing".
func (c *Config) loadEnv(env map[string]string) (warnings []string, err error) {
	names := make([]string, 0, len(env))
	for k := range env {
		names = append(names, k)
	}
	sort.Strings(names) // stable warning and error order
	var errs []error
	for _, name := range names {
		if name == EnvConfig {
			continue
		}
		key := strings.ToLower(strings.TrimPrefix(name, EnvPrefix))
		if key == keyNamespaces || key == keyIngest {
			warnings = append(warnings, "environment variable "+name+" is ignored: "+key+" can only be set in the config file")
			continue
		}
		f := fieldByKey[key]
		if f == nil || f.env() != name {
			warnings = append(warnings, "unknown environment variable "+name+suggest(name, envNames()))
			continue
		}
		if env[name] == "" {
			continue
		}
		if err := f.set(c, env[name]); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return warnings, errors.Join(errs...)
}

func envNames() []string {
	out := make([]string, len(fields))
	for i := range fields {
		out[i] = fields[i].env()
	}
	return out
}

// loadFile applies the YAML file at name.
func (c *Config) loadFile(name string) (warnings []string, err error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("config file %s: %w", name, err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 { // empty file
		return nil, nil
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" { // only comments
		return nil, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("config file %s: line %d: expected a mapping of keys to values", name, root.Line)
	}
	var errs []error
	fail := func(n *yaml.Node, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config file %s: line %d: %s", name, n.Line, fmt.Sprintf(format, args...)))
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		key := k.Value
		if line, dup := seen[key]; dup {
			fail(k, "key %q repeats the one on line %d", key, line)
			continue
		}
		seen[key] = k.Line
		switch key {
		case keyNamespaces:
			warnings = append(warnings, c.decodeNamespaces(v, name, fail)...)
			continue
		case keyIngest:
			warnings = append(warnings, c.decodeIngest(v, name, fail)...)
			continue
		}
		f := fieldByKey[key]
		if f == nil {
			warnings = append(warnings, fmt.Sprintf("config file %s: line %d: unknown key %q%s", name, k.Line, key, suggest(key, fileKeys())))
			continue
		}
		if err := setFromNode(c, f, v); err != nil {
			fail(v, "%s: %v", key, err)
		}
	}
	return warnings, errors.Join(errs...)
}

// setFromNode sets a scalar or list key from its YAML value. A null value
// (`key:` with nothing after it) keeps the default, like an empty
// environment variable. A list key also takes a comma-separated string, so a
// value can be moved between file and environment unchanged.
func setFromNode(c *Config, f *field, v *yaml.Node) error {
	switch {
	case v.Kind == yaml.ScalarNode && v.Tag == "!!null":
		return nil
	case v.Kind == yaml.ScalarNode:
		return f.set(c, v.Value)
	case v.Kind == yaml.SequenceNode && f.isList():
		list := make([]string, 0, len(v.Content))
		for _, item := range v.Content {
			if item.Kind != yaml.ScalarNode {
				return fmt.Errorf("list items must be plain values")
			}
			list = append(list, strings.TrimSpace(item.Value))
		}
		*f.ptr(c).(*[]string) = list
		return nil
	case f.isList():
		return fmt.Errorf("expected a list")
	default:
		return fmt.Errorf("expected a single value")
	}
}

func fileKeys() []string {
	out := []string{keyNamespaces, keyIngest}
	for i := range fields {
		out = append(out, fields[i].key)
	}
	return out
}

// decodeNamespaces reads `namespaces: {name: {policy, history_size,
// history_ttl}}`. It decodes by hand rather than with yaml's Decode so that
// history_ttl follows the same duration rules as every other duration (a
// bare 3600 is an hour, not 3600 ns) and unknown keys become warnings.
func (c *Config) decodeNamespaces(v *yaml.Node, file string, fail func(*yaml.Node, string, ...any)) (warnings []string) {
	if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
		return nil
	}
	if v.Kind != yaml.MappingNode {
		fail(v, "namespaces: expected a mapping of namespace names to settings")
		return nil
	}
	if c.Namespaces == nil {
		c.Namespaces = map[string]Namespace{}
	}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, body := v.Content[i], v.Content[i+1]
		name := k.Value
		var ns Namespace
		if body.Kind != yaml.MappingNode && !(body.Kind == yaml.ScalarNode && body.Tag == "!!null") {
			fail(body, "namespaces.%s: expected a mapping", name)
			continue
		}
		for j := 0; j+1 < len(body.Content); j += 2 {
			fk, fv := body.Content[j], body.Content[j+1]
			var err error
			switch fk.Value {
			case "policy", "history_size", "history_ttl":
				if fv.Kind != yaml.ScalarNode {
					fail(fv, "namespaces.%s.%s: expected a single value", name, fk.Value)
					continue
				}
			default:
				warnings = append(warnings, fmt.Sprintf("config file %s: line %d: unknown key %q in namespaces.%s%s", file, fk.Line, fk.Value, name, suggest(fk.Value, []string{"policy", "history_size", "history_ttl"})))
				continue
			}
			switch fk.Value {
			case "policy":
				ns.Policy = normalizePolicy(fv.Value)
			case "history_size":
				err = fv.Decode(&ns.HistorySize)
			case "history_ttl":
				ns.HistoryTTL, err = parseDuration(fv.Value)
			}
			if err != nil {
				fail(fv, "namespaces.%s.%s: %v", name, fk.Value, err)
			}
		}
		c.Namespaces[name] = ns
	}
	return warnings
}

// decodeIngest reads the `ingest:` list. The entries are plain strings and
// one integer, so yaml's own decoding is right for them; only the keys are
// checked here, to warn about misspellings such as "deadletter".
func (c *Config) decodeIngest(v *yaml.Node, file string, fail func(*yaml.Node, string, ...any)) (warnings []string) {
	if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
		return nil
	}
	if v.Kind != yaml.SequenceNode {
		fail(v, "ingest: expected a list of sources")
		return nil
	}
	known := yamlKeys(reflect.TypeFor[Ingest]())
	c.Ingest = c.Ingest[:0]
	for i, item := range v.Content {
		if item.Kind != yaml.MappingNode {
			fail(item, "ingest[%d]: expected a mapping", i)
			continue
		}
		for j := 0; j+1 < len(item.Content); j += 2 {
			if k := item.Content[j]; !known[k.Value] {
				warnings = append(warnings, fmt.Sprintf("config file %s: line %d: unknown key %q in ingest[%d]%s", file, k.Line, k.Value, i, suggest(k.Value, sortedKeys(known))))
			}
		}
		var in Ingest
		if err := item.Decode(&in); err != nil {
			fail(item, "ingest[%d]: %v", i, err)
			continue
		}
		c.Ingest = append(c.Ingest, in)
	}
	return warnings
}

// yamlKeys lists the yaml tag names of a struct type.
func yamlKeys(t reflect.Type) map[string]bool {
	m := map[string]bool{}
	for f := range t.Fields() {
		if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name != "" && name != "-" {
			m[name] = true
		}
	}
	return m
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// suggest returns ` (did you mean "x"?)` when a known name is within two
// edits of the unknown one: most unknown keys are typos of real ones.
func suggest(unknown string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if d := editDistance(strings.ToLower(unknown), strings.ToLower(k)); d < bestDist {
			best, bestDist = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance of two short strings.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
