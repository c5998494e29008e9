// Package config builds the one Config a Tidings process runs with, from a
// YAML file, the environment and command-line flags (docs/CONFIG.md).
//
// Precedence is flags > environment > file > defaults, so that an operator
// can keep a shared file and still override one value for one start. Every
// scalar key has the same name in all three places: the file key
// ("data_dir"), the environment variable with the TIDINGS_ prefix
// ("TIDINGS_DATA_DIR") and the flag with dashes ("--data-dir"). The key
// table in fields.go is the single source of those names, so the three
// sources, the help text and the effective-config printer cannot drift.
package config

import (
	"path"
	"strings"
	"time"

	"github.com/tidings/tidings"
)

// Config is the whole configuration of a Tidings process. Defaults returns
// the documented defaults; Load layers file, environment and flags on them.
type Config struct {
	Listen              string         // TIDINGS_LISTEN, address to listen on
	DataDir             string         // TIDINGS_DATA_DIR, embedded store and generated secrets
	PathPrefix          string         // TIDINGS_PATH_PREFIX, "" or "/x" (no trailing slash)
	WSPath              string         // TIDINGS_WS_PATH
	SSEPath             string         // TIDINGS_SSE_PATH
	PollPath            string         // TIDINGS_POLL_PATH
	JWTSecret           string         // TIDINGS_JWT_SECRET, raw HMAC key (its UTF-8 bytes)
	JWTPublicKey        string         // TIDINGS_JWT_PUBLIC_KEY, path to a PEM file
	JWKSURL             string         // TIDINGS_JWKS_URL
	APIKeys             []string       // TIDINGS_API_KEYS, publisher keys
	AdminKey            string         // TIDINGS_ADMIN_KEY
	AuthWebhookURL      string         // TIDINGS_AUTH_WEBHOOK_URL
	SubscribeWebhookURL string         // TIDINGS_SUBSCRIBE_WEBHOOK_URL
	Dev                 bool           // TIDINGS_DEV, mint tokens for the demo page
	Store               string         // TIDINGS_STORE, "sqlite" or a postgres:// URL
	Broker              string         // TIDINGS_BROKER, "memory" or a redis:// or nats:// URL
	ChannelsDefault     tidings.Policy // TIDINGS_CHANNELS_DEFAULT, public|claim|deny
	AllowedOrigins      []string       // TIDINGS_ALLOWED_ORIGINS, "*" allows all
	TokenCookie         string         // TIDINGS_TOKEN_COOKIE
	PingInterval        time.Duration  // TIDINGS_PING_INTERVAL, server WebSocket pings
	IdleTimeout         time.Duration  // TIDINGS_IDLE_TIMEOUT, silence before a client is dropped
	PollTimeoutMax      time.Duration  // TIDINGS_POLL_TIMEOUT_MAX
	MaxFrameBytes       int            // TIDINGS_MAX_FRAME_BYTES
	MaxBodyBytes        int64          // TIDINGS_MAX_BODY_BYTES
	MaxSubscriptions    int            // TIDINGS_MAX_SUBSCRIPTIONS, per connection
	MaxConnsPerUser     int            // TIDINGS_MAX_CONNS_PER_USER, 0 = unlimited
	MinWriteInterval    time.Duration  // TIDINGS_MIN_WRITE_INTERVAL, 0 = write at once
	MetricsAuth         bool           // TIDINGS_METRICS_AUTH, /metrics needs the admin key
	DevTokenTTL         time.Duration  // TIDINGS_DEV_TOKEN_TTL
	LogLevel            string         // TIDINGS_LOG_LEVEL, debug|info|warn|error
	LogFormat           string         // TIDINGS_LOG_FORMAT, text|json
	ShutdownTimeout     time.Duration  // TIDINGS_SHUTDOWN_TIMEOUT

	// Namespaces holds the channel rules and history per namespace (the
	// part of a channel name before ':'). File only: a map has no natural
	// environment form.
	Namespaces map[string]Namespace
	// Ingest lists the broker sources notifications are consumed from.
	// File only, for the same reason.
	Ingest []Ingest

	// SecretsFile is the file EnsureSecrets read or wrote generated secrets
	// from ("" when none was needed). It is set by the program, never by
	// the user, and is not printed by WriteEffective.
	SecretsFile string
}

// Namespace configures the channels of one namespace.
type Namespace struct {
	// Policy decides who may subscribe: public|claim|webhook|deny; empty
	// means Config.ChannelsDefault, so a namespace can ask for history
	// without restating the rule.
	Policy tidings.Policy `yaml:"policy"`
	// HistorySize is how many recent events each channel keeps for
	// reconnecting clients; 0 keeps none.
	HistorySize int `yaml:"history_size"`
	// HistoryTTL drops kept events older than this; 0 keeps them until
	// HistorySize pushes them out.
	HistoryTTL time.Duration `yaml:"history_ttl"`
}

// Ingest is one broker source of notifications (the `ingest:` section).
// Only what every consumer needs is checked here (name, type, url and the
// one address field of the type); the rest is passed on as written, for the
// consumer of that type to interpret.
type Ingest struct {
	Name        string `yaml:"name"`
	Type        string `yaml:"type"` // amqp, mqtt, nats, redis-stream
	URL         string `yaml:"url"`
	Queue       string `yaml:"queue"`       // amqp
	DeadLetter  string `yaml:"dead_letter"` // queue, topic, subject or stream for rejects
	ClientID    string `yaml:"client_id"`   // mqtt
	Topic       string `yaml:"topic"`       // mqtt, may hold {user}
	Subject     string `yaml:"subject"`     // nats, may hold {user}
	Stream      string `yaml:"stream"`      // nats (JetStream) or redis-stream
	Group       string `yaml:"group"`       // redis-stream consumer group
	Kind        string `yaml:"kind"`        // "notification" (default) or "event"
	DefaultType string `yaml:"default_type"`
	Prefetch    int    `yaml:"prefetch"` // amqp
}

// Ingest types the server knows.
const (
	IngestAMQP        = "amqp"
	IngestMQTT        = "mqtt"
	IngestNATS        = "nats"
	IngestRedisStream = "redis-stream"
)

// Defaults returns the configuration a bare `tidings serve` runs with: one
// process, SQLite under ./data, in-memory fan-out, on :8080.
func Defaults() Config {
	return Config{
		Listen:           ":8080",
		DataDir:          "./data",
		WSPath:           "/v1/ws",
		SSEPath:          "/v1/sse",
		PollPath:         "/v1/poll",
		Store:            "sqlite",
		Broker:           "memory",
		ChannelsDefault:  tidings.PolicyPublic,
		TokenCookie:      "tidings_token",
		PingInterval:     25 * time.Second,
		IdleTimeout:      60 * time.Second,
		PollTimeoutMax:   60 * time.Second,
		MaxFrameBytes:    64 << 10,
		MaxBodyBytes:     1 << 20,
		MaxSubscriptions: 128,
		DevTokenTTL:      24 * time.Hour,
		LogLevel:         "info",
		LogFormat:        "text",
		ShutdownTimeout:  10 * time.Second,
		// An empty map rather than nil, so a program may add entries to a
		// Defaults() value without a nil-map panic.
		Namespaces: map[string]Namespace{},
	}
}

// Path joins the path prefix and p: with PathPrefix "/websocket",
// Path("/v1/ws") is "/websocket/v1/ws". It normalises the prefix itself, so
// a hand-built Config behaves like a loaded one.
func (c *Config) Path(p string) string {
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	return normalizePrefix(c.PathPrefix) + p
}

// normalizePrefix makes "", "/" and "websocket/" into "" and "/websocket":
// routes are written as prefix+"/v1/...", so the prefix must have a leading
// slash and no trailing one.
func normalizePrefix(p string) string {
	p = strings.TrimSpace(p)
	if p == "" {
		return ""
	}
	p = path.Clean("/" + p)
	if p == "/" {
		return ""
	}
	return p
}

// normalize tidies values whose spelling does not matter, so later code can
// compare them with ==.
func (c *Config) normalize() {
	c.PathPrefix = normalizePrefix(c.PathPrefix)
	c.LogLevel = strings.ToLower(strings.TrimSpace(c.LogLevel))
	c.LogFormat = strings.ToLower(strings.TrimSpace(c.LogFormat))
	c.ChannelsDefault = normalizePolicy(string(c.ChannelsDefault))
	for name, ns := range c.Namespaces {
		ns.Policy = normalizePolicy(string(ns.Policy))
		c.Namespaces[name] = ns
	}
	for i := range c.Ingest {
		c.Ingest[i].Type = strings.ToLower(strings.TrimSpace(c.Ingest[i].Type))
		c.Ingest[i].Kind = strings.ToLower(strings.TrimSpace(c.Ingest[i].Kind))
	}
}

func normalizePolicy(s string) tidings.Policy {
	return tidings.Policy(strings.ToLower(strings.TrimSpace(s)))
}
