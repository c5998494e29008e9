package config

import (
	"flag"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tidings/tidings"
)

// EnvPrefix starts every environment variable Tidings reads.
const EnvPrefix = "TIDINGS_"

// EnvConfig names the configuration file when --config is not given.
const EnvConfig = EnvPrefix + "CONFIG"

// field is one scalar or list key. The table below is the only place that
// maps names to Config fields; env, file, flags and WriteEffective all walk
// it, so adding a key means adding one line here.
type field struct {
	key    string // file key; env is TIDINGS_ + upper, flag is key with '-'
	usage  string
	secret bool // redacted by WriteEffective
	url    bool // a URL whose password WriteEffective redacts
	ptr    func(c *Config) any
}

var fields = []field{
	{key: "listen", usage: "address to listen on, host:port", ptr: func(c *Config) any { return &c.Listen }},
	{key: "data_dir", usage: "directory of the embedded store and generated secrets", ptr: func(c *Config) any { return &c.DataDir }},
	{key: "path_prefix", usage: `serve every path under this prefix (e.g. "/websocket")`, ptr: func(c *Config) any { return &c.PathPrefix }},
	{key: "ws_path", usage: "WebSocket endpoint", ptr: func(c *Config) any { return &c.WSPath }},
	{key: "sse_path", usage: "Server-Sent Events endpoint", ptr: func(c *Config) any { return &c.SSEPath }},
	{key: "poll_path", usage: "long-poll endpoint", ptr: func(c *Config) any { return &c.PollPath }},
	{key: "jwt_secret", usage: "HMAC key of user tokens (its UTF-8 bytes)", secret: true, ptr: func(c *Config) any { return &c.JWTSecret }},
	{key: "jwt_public_key", usage: "PEM file with the public key of user tokens", ptr: func(c *Config) any { return &c.JWTPublicKey }},
	{key: "jwks_url", usage: "JWKS URL with the keys of user tokens", url: true, ptr: func(c *Config) any { return &c.JWKSURL }},
	{key: "api_keys", usage: "publisher API keys", secret: true, ptr: func(c *Config) any { return &c.APIKeys }},
	{key: "admin_key", usage: "key of the admin page, stats and (optionally) metrics", secret: true, ptr: func(c *Config) any { return &c.AdminKey }},
	{key: "auth_webhook_url", usage: "URL that turns a token into a user id", url: true, ptr: func(c *Config) any { return &c.AuthWebhookURL }},
	{key: "subscribe_webhook_url", usage: "URL that allows subscriptions of webhook namespaces", url: true, ptr: func(c *Config) any { return &c.SubscribeWebhookURL }},
	{key: "dev", usage: "development mode: mint tokens for the demo page", ptr: func(c *Config) any { return &c.Dev }},
	{key: "store", usage: `inbox store: "sqlite" or a postgres:// URL`, url: true, ptr: func(c *Config) any { return &c.Store }},
	{key: "broker", usage: `fan-out broker: "memory" or a redis:// or nats:// URL`, url: true, ptr: func(c *Config) any { return &c.Broker }},
	{key: "channels_default", usage: "rule of namespaces not configured: public, claim or deny", ptr: func(c *Config) any { return &c.ChannelsDefault }},
	{key: "allowed_origins", usage: `browser origins allowed besides the request's host; "*" allows all`, ptr: func(c *Config) any { return &c.AllowedOrigins }},
	{key: "token_cookie", usage: "cookie that may carry a user token", ptr: func(c *Config) any { return &c.TokenCookie }},
	{key: "ping_interval", usage: "interval of server WebSocket pings", ptr: func(c *Config) any { return &c.PingInterval }},
	{key: "idle_timeout", usage: "close a client silent this long (must exceed ping_interval)", ptr: func(c *Config) any { return &c.IdleTimeout }},
	{key: "poll_timeout_max", usage: "longest wait of a long-poll request", ptr: func(c *Config) any { return &c.PollTimeoutMax }},
	{key: "max_frame_bytes", usage: "largest WebSocket frame accepted", ptr: func(c *Config) any { return &c.MaxFrameBytes }},
	{key: "max_body_bytes", usage: "largest HTTP request body accepted", ptr: func(c *Config) any { return &c.MaxBodyBytes }},
	{key: "max_subscriptions", usage: "subscriptions per connection", ptr: func(c *Config) any { return &c.MaxSubscriptions }},
	{key: "max_conns_per_user", usage: "connections per user, 0 = unlimited", ptr: func(c *Config) any { return &c.MaxConnsPerUser }},
	{key: "min_write_interval", usage: "write to a busy connection at most about once per interval, coalescing publications; 0 = at once", ptr: func(c *Config) any { return &c.MinWriteInterval }},
	{key: "metrics_auth", usage: "require the admin key on /metrics", ptr: func(c *Config) any { return &c.MetricsAuth }},
	{key: "dev_token_ttl", usage: "lifetime of tokens minted in development mode", ptr: func(c *Config) any { return &c.DevTokenTTL }},
	{key: "log_level", usage: "debug, info, warn or error", ptr: func(c *Config) any { return &c.LogLevel }},
	{key: "log_format", usage: "text or json", ptr: func(c *Config) any { return &c.LogFormat }},
	{key: "shutdown_timeout", usage: "how long a drain may take on SIGTERM", ptr: func(c *Config) any { return &c.ShutdownTimeout }},
}

// fileOnlyKeys are file sections without an environment or flag form.
const (
	keyNamespaces = "namespaces"
	keyIngest     = "ingest"
)

var fieldByKey = func() map[string]*field {
	m := make(map[string]*field, len(fields))
	for i := range fields {
		m[fields[i].key] = &fields[i]
	}
	return m
}()

func (f *field) env() string  { return EnvPrefix + strings.ToUpper(f.key) }
func (f *field) flag() string { return strings.ReplaceAll(f.key, "_", "-") }

func (f *field) isList() bool {
	_, ok := f.ptr(&Config{}).(*[]string)
	return ok
}

// set parses s into the field. It is the one parser behind env, flags and
// scalar file values, so "25" means 25 seconds wherever it is written.
func (f *field) set(c *Config, s string) error {
	switch p := f.ptr(c).(type) {
	case *string:
		*p = s
	case *[]string:
		*p = splitList(s)
	case *bool:
		b, err := parseBool(s)
		if err != nil {
			return err
		}
		*p = b
	case *time.Duration:
		d, err := parseDuration(s)
		if err != nil {
			return err
		}
		*p = d
	case *int:
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, strconv.IntSize)
		if err != nil {
			return fmt.Errorf("%q is not an integer", s)
		}
		*p = int(n)
	case *int64:
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not an integer", s)
		}
		*p = n
	case *tidings.Policy:
		*p = normalizePolicy(s)
	default:
		panic("config: field " + f.key + " has an unsupported type")
	}
	return nil
}

// copyTo copies the field's value from src to dst (used to lay the flags
// that were given over the file and environment).
func (f *field) copyTo(dst, src *Config) {
	switch p := f.ptr(dst).(type) {
	case *string:
		*p = *f.ptr(src).(*string)
	case *[]string:
		*p = slices.Clone(*f.ptr(src).(*[]string))
	case *bool:
		*p = *f.ptr(src).(*bool)
	case *time.Duration:
		*p = *f.ptr(src).(*time.Duration)
	case *int:
		*p = *f.ptr(src).(*int)
	case *int64:
		*p = *f.ptr(src).(*int64)
	case *tidings.Policy:
		*p = *f.ptr(src).(*tidings.Policy)
	}
}

// format renders the field's value the way set would read it back.
func (f *field) format(c *Config) string {
	switch p := f.ptr(c).(type) {
	case *string:
		return *p
	case *[]string:
		return strings.Join(*p, ",")
	case *bool:
		return strconv.FormatBool(*p)
	case *time.Duration:
		return formatDuration(*p)
	case *int:
		return strconv.Itoa(*p)
	case *int64:
		return strconv.FormatInt(*p, 10)
	case *tidings.Policy:
		return string(*p)
	}
	return ""
}

// splitList reads "a, b,,c" as [a b c]: spaces around commas are a common
// slip in env files, and an empty item is never a useful key or origin.
func splitList(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// parseBool takes exactly true/false/1/0 (any case), the forms the product
// documents; strconv.ParseBool would also take "t" and "F", which read like
// typos in a config file.
func parseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "1":
		return true, nil
	case "false", "0":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean (true, false, 1 or 0)", s)
}

// parseDuration takes a Go duration ("25s", "1h30m") or plain seconds ("25",
// "0.5"), because operators write timeouts both ways and a bare number
// silently meaning nanoseconds would be a trap.
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if secs, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(secs) || math.IsInf(secs, 0) || math.Abs(secs) > math.MaxInt64/float64(time.Second) {
			return 0, fmt.Errorf("%q is not a duration", s)
		}
		return time.Duration(secs * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (like 25s, 1h30m or plain seconds)", s)
	}
	return d, nil
}

// formatDuration prints "24h" rather than Go's "24h0m0s"; the result still
// parses with time.ParseDuration.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// flagValue binds one field of a Config to a flag.
type flagValue struct {
	c     *Config
	f     *field
	given bool // a list flag repeated appends instead of replacing
}

func (v *flagValue) String() string {
	if v == nil || v.c == nil || v.f == nil { // flag.PrintDefaults probes a zero value
		return ""
	}
	return v.f.format(v.c)
}

func (v *flagValue) Set(s string) error {
	if v.given && v.f.isList() {
		list := v.f.ptr(v.c).(*[]string)
		*list = append(*list, splitList(s)...)
		return nil
	}
	v.given = true
	return v.f.set(v.c, s)
}

// IsBoolFlag lets a bare --dev mean --dev=true.
func (v *flagValue) IsBoolFlag() bool {
	if v == nil || v.f == nil {
		return false
	}
	_, ok := v.f.ptr(&Config{}).(*bool)
	return ok
}

// Register adds a flag for every key to fs, plus --config, bound to c's
// fields with c's current values as the shown defaults. A CLI calls it on a
// Defaults() value to print help; Load uses it to parse.
func (c *Config) Register(fs *flag.FlagSet) {
	fs.String("config", "", "YAML configuration file ("+EnvConfig+")")
	for i := range fields {
		f := &fields[i]
		fs.Var(&flagValue{c: c, f: f}, f.flag(), f.usage+" ("+f.env()+f.kindWord()+")")
	}
}

// kindWord describes list and duration values in help; the flag package
// shows a backquoted word of the usage as the flag's placeholder
// ("-ping-interval duration").
func (f *field) kindWord() string {
	switch f.ptr(&Config{}).(type) {
	case *[]string:
		return ", comma-separated `list`"
	case *time.Duration:
		return ", a `duration` like 25s or plain seconds"
	}
	return ""
}
