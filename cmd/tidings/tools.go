package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/tidings/tidings/internal/auth"
)

// commonFlags are the configuration flags the tool commands accept; the
// rest of the configuration comes from the file and the environment.
func commonFlags(fs *flag.FlagSet) (cfgFile, dataDir *string) {
	return fs.String("config", "", "config file (YAML)"), fs.String("data-dir", "", "data directory (for generated secrets)")
}

func passDown(cfgFile, dataDir string) []string {
	var args []string
	if cfgFile != "" {
		args = append(args, "--config", cfgFile)
	}
	if dataDir != "" {
		args = append(args, "--data-dir", dataDir)
	}
	return args
}

func token(args, environ []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	user := fs.String("user", "", "user id (the token's sub)")
	ttl := fs.Duration("ttl", 24*time.Hour, "lifetime of the token")
	channels := fs.String("channels", "", "comma-separated channels for the channels claim")
	cfgFile, dataDir := commonFlags(fs)
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if *user == "" {
		fmt.Fprintln(stderr, "token: --user is required")
		return errUsage
	}
	cfg, err := loadConfig(passDown(*cfgFile, *dataDir), environ, stderr)
	if err != nil {
		return err
	}
	if _, err := cfg.EnsureSecrets(); err != nil {
		return err
	}
	if cfg.JWTSecret == "" {
		return fmt.Errorf("no jwt_secret configured: tokens are minted with HS256 (set TIDINGS_JWT_SECRET)")
	}
	var chans []string
	if *channels != "" {
		chans = strings.Split(*channels, ",")
	}
	tok, err := auth.MintHS256([]byte(cfg.JWTSecret), *user, *ttl, chans)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

func publish(args, environ []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("publish", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "", "base URL of a running node (default: http://<listen address>)")
	users := fs.String("user", "", "comma-separated user ids")
	typ := fs.String("type", "message", "notification type")
	title := fs.String("title", "", "title")
	body := fs.String("body", "", "body text")
	link := fs.String("url", "", "link")
	data := fs.String("data", "", "JSON data")
	key := fs.String("idempotency-key", "", "idempotency key")
	apiKey := fs.String("api-key", "", "API key (default: the first configured key)")
	cfgFile, dataDir := commonFlags(fs)
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if *users == "" {
		fmt.Fprintln(stderr, "publish: --user is required")
		return errUsage
	}
	cfg, err := loadConfig(passDown(*cfgFile, *dataDir), environ, stderr)
	if err != nil {
		return err
	}
	if _, err := cfg.EnsureSecrets(); err != nil {
		return err
	}
	if *apiKey == "" && len(cfg.APIKeys) > 0 {
		*apiKey = cfg.APIKeys[0]
	}
	if *server == "" {
		addr := cfg.Listen
		if strings.HasPrefix(addr, ":") {
			addr = "localhost" + addr
		}
		*server = "http://" + addr
	}
	req := map[string]any{"users": strings.Split(*users, ","), "type": *typ, "title": *title, "body": *body, "url": *link}
	if *key != "" {
		req["idempotency_key"] = *key
	}
	if *data != "" {
		if !json.Valid([]byte(*data)) {
			return fmt.Errorf("--data is not valid JSON")
		}
		req["data"] = json.RawMessage(*data)
	}
	b, _ := json.Marshal(req)
	hreq, err := http.NewRequest(http.MethodPost, strings.TrimRight(*server, "/")+cfg.Path("/v1/notifications"), bytes.NewReader(b))
	if err != nil {
		return err
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Authorization", "Bearer "+*apiKey)
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(hreq)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(out))
	}
	fmt.Fprintln(stdout, string(bytes.TrimSpace(out)))
	return nil
}
