# Tidings: build and test. `make test` is the whole suite (what CI runs).
GO ?= go
FUZZRUNS ?= 200000
FUZZRUNS_FAST ?= 350000
FUZZRUNS_SOCKET ?= 60000
PKGS := ./...

.PHONY: run build test check unit browser browser-deps fuzz bench clean

run:
	$(GO) run ./cmd/tidings serve --dev

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/tidings ./cmd/tidings
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/tidings-bench ./cmd/tidings-bench

test: check unit browser fuzz

# Static checks: formatting, and vet here and for the other systems a
# contributor may build on.
check:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)
	GOOS=darwin $(GO) vet $(PKGS)
	GOOS=windows $(GO) vet $(PKGS)

# Every test, under the race detector, end-to-end ones included; then the
# transports again on the portable poller (what other systems run).
unit:
	$(GO) test -race -count=1 $(PKGS)
	$(GO) test -race -count=1 -tags netpoll_portable ./internal/transport/... ./internal/server

# The demo page in a real headless Chromium (Debian's chromium package,
# driven by playwright-core); installs both when missing.
browser: build browser-deps
	cd web/test && TEST_TIDINGS_BIN=$(CURDIR)/bin/tidings npm test

browser-deps:
	@command -v chromium >/dev/null || { echo "installing Debian's chromium"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	cd web/test && npm ci --no-audit --no-fund

# Each fuzz target for a bounded number of runs (decoders: frames, bodies,
# tokens), sized to about 15 s each here (FuzzParseChunks opens real
# sockets: fewer runs). A count, not a duration: with
# -fuzztime=<duration> Go 1.26's fuzzing coordinator can report its own
# deadline as a failure (golang/go#75804, fixed in Go 1.27).
fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeFrame$$' -fuzztime=$(FUZZRUNS_FAST)x ./internal/transport/ws
	$(GO) test -run='^$$' -fuzz='^FuzzReadHead$$' -fuzztime=$(FUZZRUNS_FAST)x ./internal/transport/ws
	$(GO) test -run='^$$' -fuzz='^FuzzParseChunks$$' -fuzztime=$(FUZZRUNS_SOCKET)x ./internal/transport/ws
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeBodies$$' -fuzztime=$(FUZZRUNS_FAST)x ./internal/inbox
	$(GO) test -run='^$$' -fuzz='^FuzzAuthenticate$$' -fuzztime=$(FUZZRUNS)x ./internal/auth
	$(GO) test -run='^$$' -fuzz='^FuzzWebhookAnswer$$' -fuzztime=$(FUZZRUNS)x ./internal/auth
	$(GO) test -run='^$$' -fuzz='^FuzzScanClaims$$' -fuzztime=$(FUZZRUNS)x ./internal/auth
	$(GO) test -run='^$$' -fuzz='^FuzzEncode$$' -fuzztime=$(FUZZRUNS)x .

# Go benchmarks of the hot paths (not part of `test`; see docs/BENCHMARKS.md).
bench:
	$(GO) test -run='^$$' -bench=. -benchmem . ./internal/hub ./internal/store/sqlitestore ./internal/auth

clean:
	rm -rf bin
