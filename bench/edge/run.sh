#!/usr/bin/env bash
# HTTP edge under slow clients (never run in CI; issue 17, item 3). On loopback, in one run:
# `/healthz` latency (p50/p99, a new connection per request, CONCURRENCY at a time) with nothing
# else going on, then while HALF_OPEN idle half-open connections and SLOW slow senders (one header
# byte every second, never finishing the head) are held against the same gateway, spread over
# ADDRS loopback addresses (so the per-address cap does not evict them at once) and re-opened as
# soon as the gateway closes them. Prints one JSON line with both and the p99 ratio.
# Usage: bench/edge/run.sh   (env: HALF_OPEN=3000 SLOW=200 ADDRS=20 REQUESTS=3000 CONCURRENCY=8)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
TARGET_DIR="${TARGET_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}}"
WORK="$(mktemp -d /tmp/edge-bench.XXXXXX)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# The flood needs more descriptors than the usual soft limit of 1,024 (the gateway raises its own).
ulimit -n "$(ulimit -Hn)"

CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release -q -p portcullis-cli
BIN="$TARGET_DIR/release/portcullis"

: >"$WORK/portcullis.toml"
PORTCULLIS_SERVER_BIND=127.0.0.1:0 PORTCULLIS_EGRESS_PROXY_BIND= PORTCULLIS_EGRESS_DNS_BIND= \
  PORTCULLIS_LOG=warn "$BIN" serve --config "$WORK/portcullis.toml" --data-dir "$WORK/data" \
  >"$WORK/stdout" 2>"$WORK/stderr" &
PIDS+=($!)
for _ in $(seq 1 200); do
  [ -s "$WORK/data/listening.json" ] && break
  sleep 0.05
done
ADDR="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["http"])' "$WORK/data/listening.json")"

HALF_OPEN="${HALF_OPEN:-3000}" SLOW="${SLOW:-200}" ADDRS="${ADDRS:-20}" \
  REQUESTS="${REQUESTS:-3000}" CONCURRENCY="${CONCURRENCY:-8}" \
  python3 "$ROOT/bench/edge/load.py" "$ADDR"
