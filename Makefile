# Tidings: build and test. `make test` is the whole suite (what CI runs).
GO ?= go
FUZZTIME ?= 15s
PKGS := ./...

.PHONY: run build test check unit browser browser-deps fuzz bench clean

run:
	$(GO) run ./cmd/tidings serve --dev

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/tidings ./cmd/tidings
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/tidings-bench ./cmd/tidings-bench

test: check unit browser fuzz

# Static checks: formatting and vet.
check:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)

# Every test, under the race detector, end-to-end ones included.
unit:
	$(GO) test -race -count=1 $(PKGS)

# The demo page in a real headless Chromium (Debian's chromium package,
# driven by playwright-core); installs both when missing.
browser: build browser-deps
	cd web/test && TEST_TIDINGS_BIN=$(CURDIR)/bin/tidings npm test

browser-deps:
	@command -v chromium >/dev/null || { echo "installing Debian's chromium"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	cd web/test && npm ci --no-audit --no-fund

# Each fuzz target for a bounded time (decoders: frames, bodies, tokens).
fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeFrame$$' -fuzztime=$(FUZZTIME) ./internal/transport/ws
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeBodies$$' -fuzztime=$(FUZZTIME) ./internal/inbox
	$(GO) test -run='^$$' -fuzz='^FuzzAuthenticate$$' -fuzztime=$(FUZZTIME) ./internal/auth
	$(GO) test -run='^$$' -fuzz='^FuzzWebhookAnswer$$' -fuzztime=$(FUZZTIME) ./internal/auth
	$(GO) test -run='^$$' -fuzz='^FuzzEncode$$' -fuzztime=$(FUZZTIME) .

# Go benchmarks of the hot paths (not part of `test`; see docs/BENCHMARKS.md).
bench:
	$(GO) test -run='^$$' -bench=. -benchmem . ./internal/hub ./internal/store/sqlitestore ./internal/auth

clean:
	rm -rf bin
