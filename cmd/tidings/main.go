// Command tidings is the Tidings notification server and its tools.
//
//	tidings serve [flags]        run a node (flags: see tidings serve -h)
//	tidings token --user ID      mint a user token with the configured secret
//	tidings publish --user ID …  send a notification to a running node
//	tidings config [flags]       print the effective configuration
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/tidings/tidings/internal/config"
	"github.com/tidings/tidings/internal/server"
)

// version is set at build time (-ldflags "-X main.version=…").
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

const usage = `Tidings: a real-time notification server.

Usage:
  tidings serve [flags]          run a node (embedded store; demo page on /)
  tidings token --user ID        mint a user token (HS256, configured secret)
  tidings publish --user ID ...  send a notification through a running node
  tidings config [flags]         print the effective configuration
  tidings version                print the version

Run "tidings <command> -h" for a command's flags.
`

func run(args, environ []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		args = []string{"serve"}
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "serve":
		err = serve(rest, environ, stdout, stderr)
	case "token":
		err = token(rest, environ, stdout, stderr)
	case "publish":
		err = publish(rest, environ, stdout, stderr)
	case "config":
		err = printConfig(rest, environ, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "tidings", version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		if strings.HasPrefix(cmd, "-") { // flags without a command: serve
			err = serve(args, environ, stdout, stderr)
			break
		}
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if err != nil {
		if errors.Is(err, errUsage) {
			return 2
		}
		fmt.Fprintln(stderr, "tidings:", err)
		return 1
	}
	return 0
}

var errUsage = errors.New("usage")

// loadConfig loads, validates and completes the configuration.
func loadConfig(args, environ []string, stderr io.Writer) (*config.Config, error) {
	cfg, warnings, err := config.Load(args, environ)
	if err != nil {
		return nil, err
	}
	for _, w := range warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return cfg, nil
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func serve(args, environ []string, _, stderr io.Writer) error {
	cfg, err := loadConfig(args, environ, stderr)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	generated, err := cfg.EnsureSecrets()
	if err != nil {
		return err
	}
	if len(generated) > 0 {
		log.Info("generated secrets on first start; keep them safe", "file", cfg.SecretsFile, "generated", strings.Join(generated, ","))
	} else if cfg.SecretsFile != "" {
		log.Info("using generated secrets", "file", cfg.SecretsFile)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := server.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		srv.Close()
		return err
	}
	if cfg.Dev {
		log.Info("dev mode: demo page mints tokens", "url", "http://"+displayAddr(srv.Addr().String())+cfg.Path("/"))
	}
	err = srv.Run(ctx)
	log.Info("stopped")
	return err
}

func displayAddr(a string) string {
	if strings.HasPrefix(a, "[::]:") {
		return "localhost:" + strings.TrimPrefix(a, "[::]:")
	}
	if strings.HasPrefix(a, "0.0.0.0:") {
		return "localhost:" + strings.TrimPrefix(a, "0.0.0.0:")
	}
	return a
}

func printConfig(args, environ []string, stdout, stderr io.Writer) error {
	cfg, warnings, err := config.Load(args, environ)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "invalid configuration:\n%v\n", err)
		_ = cfg.WriteEffective(stdout, false)
		return errors.New("configuration has problems")
	}
	return cfg.WriteEffective(stdout, false)
}
