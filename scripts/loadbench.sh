#!/usr/bin/env bash
# Runs the load tool's scenarios against a fresh Tidings server each time
# and appends every run's JSON line to $OUT (docs/BENCHMARKS.md).
#
#   make build && scripts/loadbench.sh [scenario ...]
#
# Scenarios: idle idle-sse storm storm-sse broadcast1 broadcast1-sse
# broadcast20 broadcast20-sse broadcast20-coalesced broadcast-2s-15k
# broadcast100-15k broadcast100 broadcast100-sse floor1 floor2 personal
# personal-sse personal-batch personal-25k. Default: all of them. RUNS
# (default 3) runs of each; N (default 14000) connections; OUT (default
# /tmp/tidings-loadbench.jsonl); BENCH_TMP (default /tmp) holds the
# server's data directory (BENCH_TMP=/dev/shm: the store on tmpfs, where
# fsync costs nothing). Loopback only; a long run: about 25 minutes for
# everything.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
N=${N:-14000}
OUT=${OUT:-/tmp/tidings-loadbench.jsonl}
PORT=${PORT:-18180}
SECRET=bench-secret-bench-secret-bench-secret
KEY=bench-key
WORK=$(mktemp -d "${BENCH_TMP:-/tmp}/tidings-loadbench.XXXXXX")
trap 'stop_server; rm -rf "$WORK"' EXIT

BIN=${BIN:-bin/tidings} # BIN=other/binary: the same scenarios against another build
BENCH=bin/tidings-bench
[ -x "$BIN" ] && [ -x "$BENCH" ] || { echo "run make build first" >&2; exit 2; }

# The bench namespace keeps history, so deliveries carry the channel's
# sequence and the load tool checks their order.
cat >"$WORK/tidings.yaml" <<EOF
namespaces:
  bench:
    history_size: 1000
EOF

PID=
start_server() {
	rm -rf "$WORK/data"
	TIDINGS_LISTEN=127.0.0.1:$PORT TIDINGS_DATA_DIR=$WORK/data TIDINGS_JWT_SECRET=$SECRET \
	TIDINGS_API_KEYS=$KEY TIDINGS_IDLE_TIMEOUT=600s TIDINGS_PING_INTERVAL=300s TIDINGS_LOG_LEVEL=warn \
	TIDINGS_MIN_WRITE_INTERVAL=${MIN_WRITE_INTERVAL:-0s} \
		"$BIN" serve --config "$WORK/tidings.yaml" >"$WORK/server.log" 2>&1 &
	PID=$!
	for _ in $(seq 100); do
		curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && return 0
		sleep 0.1
	done
	echo "server did not start:" >&2
	cat "$WORK/server.log" >&2
	exit 1
}

stop_server() {
	if [ -n "$PID" ]; then
		kill "$PID" 2>/dev/null || true
		wait "$PID" 2>/dev/null || true
		PID=
	fi
}

run() { # name, then the load tool's arguments
	local name=$1
	shift
	for i in $(seq "$RUNS"); do
		local pid=()
		if [ "$1" != floor ]; then # floor needs no server
			start_server
			pid=(--pid "$PID")
		fi
		echo "== $name ($i/$RUNS)" >&2
		local line
		if line=$("$BENCH" "$@" "${pid[@]}" 2>"$WORK/bench.err" | head -1); then :; fi
		if [ -z "$line" ]; then
			echo "$name: no result" >&2
			cat "$WORK/bench.err" >&2
		else
			echo "{\"run\":\"$name\",\"date\":\"$(date -u +%FT%TZ)\",\"result\":$line}" >>"$OUT"
			echo "$line" >&2
		fi
		stop_server
	done
}

U=ws://127.0.0.1:$PORT/v1/ws
common=(--url "$U" --secret "$SECRET")
pub=(--url "$U" --secret "$SECRET" --api-key "$KEY")

scenario() {
	case $1 in
	idle) run idle idle "${common[@]}" --n 15000 ;;
	idle-sse) run idle-sse idle "${common[@]}" --n 15000 --transport sse ;;
	storm) run storm storm "${common[@]}" --n "$N" ;;
	storm-sse) run storm-sse storm "${common[@]}" --n "$N" --transport sse ;;
	broadcast1) run broadcast1 broadcast "${pub[@]}" --n "$N" --channel bench:all --publishes 20 --rate 1 ;;
	broadcast1-sse) run broadcast1-sse broadcast "${pub[@]}" --n "$N" --channel bench:all --publishes 20 --rate 1 --transport sse ;;
	broadcast20) run broadcast20 broadcast "${pub[@]}" --n "$N" --channel bench:all --publishes 100 --rate 20 ;;
	broadcast20-sse) run broadcast20-sse broadcast "${pub[@]}" --n "$N" --channel bench:all --publishes 100 --rate 20 --transport sse ;;
	# The same with publications coalesced: one write per connection per 400 ms.
	broadcast20-coalesced) MIN_WRITE_INTERVAL=400ms run broadcast20-coalesced broadcast "${pub[@]}" --n "$N" --channel bench:all --publishes 100 --rate 20 ;;
	# PRODUCT's broadcast rows as written: 15,000 subscribers, one broadcast
	# every 2 s (latency) and 100/s (throughput).
	broadcast-2s-15k) run broadcast-2s-15k broadcast "${pub[@]}" --n 15000 --channel bench:all --publishes 10 --rate 0.5 ;;
	broadcast100-15k) run broadcast100-15k broadcast "${pub[@]}" --n 15000 --channel bench:all --publishes 300 --rate 100 ;;
	broadcast100) run broadcast100 broadcast "${pub[@]}" --n "$N" --channel bench:all --publishes 300 --rate 100 ;;
	broadcast100-sse) run broadcast100-sse broadcast "${pub[@]}" --n "$N" --channel bench:all --publishes 300 --rate 100 --transport sse ;;
	# floor holds both ends of each connection: half the descriptors each.
	floor1) run floor1 floor --n 9000 --publishes 20 --rate 1 --writers 1 ;;
	floor2) run floor2 floor --n 9000 --publishes 20 --rate 1 --writers 2 ;;
	personal) run personal personal "${pub[@]}" --n 2000 --rate 2000 --warmup 2s --duration 10s ;;
	personal-sse) run personal-sse personal "${pub[@]}" --n 2000 --rate 2000 --warmup 2s --duration 10s --transport sse ;;
	personal-batch) run personal-batch personal "${pub[@]}" --n 10000 --rate 40000 --batch 500 --warmup 2s --duration 20s ;;
	# PRODUCT's row: 25,000 durable notifications/s, latency measured.
	personal-25k) run personal-25k personal "${pub[@]}" --n 10000 --rate 25000 --batch 100 --warmup 2s --duration 15s ;;
	*) echo "unknown scenario $1" >&2; exit 2 ;;
	esac
}

if [ $# -eq 0 ]; then
	set -- idle idle-sse storm storm-sse floor1 floor2 broadcast1 broadcast1-sse broadcast20 broadcast20-sse broadcast20-coalesced \
		broadcast-2s-15k broadcast100-15k broadcast100 broadcast100-sse personal personal-sse personal-batch personal-25k
fi
for s in "$@"; do scenario "$s"; done
echo "results appended to $OUT" >&2
