package config

import (
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/tidings/tidings"
)

// Validate checks the whole configuration and returns one error that names
// every problem, one per line, each starting with its key. Reporting them
// all at once spares an operator a fix-restart loop per mistake.
func (c *Config) Validate() error {
	var p problems

	c.validateServer(&p)
	c.validateAuth(&p)
	c.validateBackends(&p)
	c.validateLimits(&p)
	c.validateNamespaces(&p)
	c.validateIngest(&p)

	return p.err()
}

// problems collects what Validate finds.
type problems []error

func (p *problems) add(key, format string, args ...any) {
	*p = append(*p, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
}

func (p problems) err() error { return errors.Join(p...) }

func (c *Config) validateServer(p *problems) {
	if err := checkListen(c.Listen); err != nil {
		p.add("listen", "%v", err)
	}
	if c.DataDir == "" {
		p.add("data_dir", "must not be empty")
	}
	if prefix := normalizePrefix(c.PathPrefix); strings.ContainsAny(prefix, "?#") || hasSpace(prefix) {
		p.add("path_prefix", "%q must be a plain URL path", c.PathPrefix)
	}
	paths := map[string]string{}
	for _, e := range []struct{ key, path string }{
		{"ws_path", c.WSPath}, {"sse_path", c.SSEPath}, {"poll_path", c.PollPath},
	} {
		switch {
		case !strings.HasPrefix(e.path, "/"):
			p.add(e.key, "%q must start with /", e.path)
		case strings.ContainsAny(e.path, "?#{}") || hasSpace(e.path):
			p.add(e.key, "%q must be a plain URL path", e.path)
		case paths[e.path] != "":
			p.add(e.key, "%q is also %s", e.path, paths[e.path])
		default:
			paths[e.path] = e.key
		}
	}
	for _, o := range c.AllowedOrigins {
		if o == "*" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			p.add("allowed_origins", `%q is neither "*" nor an origin like https://app.example.com`, o)
		}
	}
	if c.TokenCookie != "" && !isToken(c.TokenCookie) {
		p.add("token_cookie", "%q is not a valid cookie name", c.TokenCookie)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		p.add("log_level", "%q is not debug, info, warn or error", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		p.add("log_format", "%q is not text or json", c.LogFormat)
	}
}

// checkListen accepts host:port with a numeric port; ":0" is allowed for
// tests that want any free port.
func checkListen(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q has no valid port number", addr)
	}
	return nil
}

func (c *Config) validateAuth(p *problems) {
	if c.JWTPublicKey != "" {
		data, err := os.ReadFile(c.JWTPublicKey)
		switch {
		case err != nil:
			p.add("jwt_public_key", "%v", err)
		case pemBlock(data) == nil:
			p.add("jwt_public_key", "%s holds no PEM block", c.JWTPublicKey)
		}
	}
	checkHTTPURL(p, "jwks_url", c.JWKSURL)
	checkHTTPURL(p, "auth_webhook_url", c.AuthWebhookURL)
	checkHTTPURL(p, "subscribe_webhook_url", c.SubscribeWebhookURL)
	for i, k := range c.APIKeys {
		if k == "" || hasSpace(k) || strings.Contains(k, ",") {
			p.add("api_keys", "key %d is empty or holds a space or comma", i+1)
		}
	}
	if hasSpace(c.AdminKey) {
		p.add("admin_key", "holds a space")
	}
	switch c.ChannelsDefault {
	case tidings.PolicyPublic, tidings.PolicyClaim, tidings.PolicyDeny:
	default:
		// webhook is not offered as the default: it would send a webhook
		// request for every subscription to any channel at all.
		p.add("channels_default", "%q is not public, claim or deny", c.ChannelsDefault)
	}
}

func pemBlock(data []byte) *pem.Block {
	b, _ := pem.Decode(data)
	return b
}

func checkHTTPURL(p *problems, key, s string) {
	if s == "" {
		return
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.add(key, "%s is not an http(s) URL", redactURL(s))
	}
}

func (c *Config) validateBackends(p *problems) {
	if c.Store != "sqlite" {
		if u, err := url.Parse(c.Store); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			p.add("store", `%s is neither "sqlite" nor a postgres:// URL`, quoteRedacted(c.Store))
		}
	}
	if c.Broker != "memory" {
		u, err := url.Parse(c.Broker)
		if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "nats") || u.Host == "" {
			p.add("broker", `%s is neither "memory" nor a redis:// or nats:// URL with a host`, quoteRedacted(c.Broker))
		}
	}
}

func (c *Config) validateLimits(p *problems) {
	if c.PingInterval <= 0 {
		p.add("ping_interval", "must be positive, not %s", formatDuration(c.PingInterval))
	}
	if c.IdleTimeout <= c.PingInterval {
		// A client that answers every ping would still be dropped.
		p.add("idle_timeout", "%s must be longer than ping_interval (%s)", formatDuration(c.IdleTimeout), formatDuration(c.PingInterval))
	}
	if c.PollTimeoutMax <= 0 {
		p.add("poll_timeout_max", "must be positive, not %s", formatDuration(c.PollTimeoutMax))
	}
	if c.DevTokenTTL <= 0 {
		p.add("dev_token_ttl", "must be positive, not %s", formatDuration(c.DevTokenTTL))
	}
	if c.ShutdownTimeout < 0 {
		p.add("shutdown_timeout", "must not be negative")
	}
	if c.MaxFrameBytes <= 0 {
		p.add("max_frame_bytes", "must be positive, not %d", c.MaxFrameBytes)
	}
	if c.MaxBodyBytes <= 0 {
		p.add("max_body_bytes", "must be positive, not %d", c.MaxBodyBytes)
	}
	if c.MaxSubscriptions <= 0 {
		p.add("max_subscriptions", "must be positive, not %d", c.MaxSubscriptions)
	}
	if c.MaxConnsPerUser < 0 {
		p.add("max_conns_per_user", "must not be negative (0 means unlimited)")
	}
	if c.MinWriteInterval < 0 || c.MinWriteInterval > maxWriteInterval {
		p.add("min_write_interval", "must be between 0 (off) and %s, not %s", formatDuration(maxWriteInterval), formatDuration(c.MinWriteInterval))
	}
}

// maxWriteInterval bounds min_write_interval: past a second, coalescing
// would hold messages longer than a user waits for a notification.
const maxWriteInterval = time.Second

func (c *Config) validateNamespaces(p *problems) {
	names := make([]string, 0, len(c.Namespaces))
	for name := range c.Namespaces {
		names = append(names, name)
	}
	sort.Strings(names) // problems in a stable order
	for _, name := range names {
		ns := c.Namespaces[name]
		key := "namespaces." + name
		// The empty name is the namespace of channels without ':'.
		if strings.Contains(name, ":") || (name != "" && !tidings.ValidChannel(name)) {
			p.add(key, "%q is not a namespace name (no ':', spaces or control characters)", name)
		}
		switch ns.Policy {
		case "", tidings.PolicyPublic, tidings.PolicyClaim, tidings.PolicyDeny:
		case tidings.PolicyWebhook:
			if c.SubscribeWebhookURL == "" {
				p.add(key, "policy webhook needs subscribe_webhook_url")
			}
		default:
			p.add(key, "policy %q is not public, claim, webhook or deny", ns.Policy)
		}
		if name+":" == tidings.PersonalPrefix && ns.Policy != "" {
			p.add(key, "personal channels are always owner-only; their policy cannot be set")
		}
		if name+":" == tidings.PersonalPrefix && (ns.HistorySize != 0 || ns.HistoryTTL != 0) {
			p.add(key, "personal channels resume from the stored inbox; history cannot be set")
		}
		if ns.HistorySize < 0 {
			p.add(key, "history_size must not be negative")
		}
		if ns.HistoryTTL < 0 {
			p.add(key, "history_ttl must not be negative")
		}
	}
}

// ingestAddress is the field each ingest type cannot work without.
var ingestAddress = map[string]struct {
	key string
	get func(*Ingest) string
}{
	IngestAMQP:        {"queue", func(in *Ingest) string { return in.Queue }},
	IngestMQTT:        {"topic", func(in *Ingest) string { return in.Topic }},
	IngestNATS:        {"subject", func(in *Ingest) string { return in.Subject }},
	IngestRedisStream: {"stream", func(in *Ingest) string { return in.Stream }},
}

func (c *Config) validateIngest(p *problems) {
	seen := map[string]int{}
	for i := range c.Ingest {
		in := &c.Ingest[i]
		key := fmt.Sprintf("ingest[%d]", i)
		if in.Name != "" {
			key += " (" + in.Name + ")"
		}
		if in.Name == "" {
			p.add(key, "name is required")
		} else if j, dup := seen[in.Name]; dup {
			p.add(key, "name %q is already used by ingest[%d]", in.Name, j)
		} else {
			seen[in.Name] = i
		}
		addr, known := ingestAddress[in.Type]
		if !known {
			p.add(key, "type %q is not amqp, mqtt, nats or redis-stream", in.Type)
		} else if addr.get(in) == "" {
			p.add(key, "%s is required for type %s", addr.key, in.Type)
		}
		if in.URL == "" {
			p.add(key, "url is required")
		} else if u, err := url.Parse(in.URL); err != nil || u.Scheme == "" {
			p.add(key, "url %s is not a URL", quoteRedacted(in.URL))
		}
		switch in.Kind {
		case "", "notification", "event":
		default:
			p.add(key, "kind %q is not notification or event", in.Kind)
		}
		if in.Prefetch < 0 {
			p.add(key, "prefetch must not be negative")
		}
	}
}

func hasSpace(s string) bool { return strings.IndexFunc(s, unicode.IsSpace) >= 0 }

// isToken reports whether s is an HTTP token (RFC 9110), the syntax of a
// cookie name.
func isToken(s string) bool {
	for _, r := range s {
		if r > 0x7e || r <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return false
		}
	}
	return s != ""
}

// quoteRedacted quotes a value that may be a URL with a password, without
// the password: validation errors end up in logs.
func quoteRedacted(s string) string { return strconv.Quote(redactURL(s)) }

// redactURL hides the password of a URL; other text is returned unchanged.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, has := u.User.Password(); !has {
		return s
	}
	return u.Redacted()
}
