#!/usr/bin/env bash
# MCP benchmark (never run in CI). On loopback, in one run: `tools/call` of the fixture's echo tool
# directly against `portcullis fixture-server --http` and through Portcullis fronting that same HTTP
# upstream, with policy, pinned-schema and argument validation, secret redaction and the ledger on.
# Reports sequential median and p99 (and the added latency), then calls/s with 64 concurrent
# clients. Usage: bench/mcp/run.sh   (env: CALLS, CLIENTS, SECS, TARGET_DIR)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
TARGET_DIR="${TARGET_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}}"
CALLS="${CALLS:-5000}"
CLIENTS="${CLIENTS:-64}"
SECS="${SECS:-10}"
WORK="$(mktemp -d /tmp/mcp-bench.XXXXXX)"
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release -q -p portcullis-cli
CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release -q -p portcullis-mcp-fixture --example mcp_bench
BIN="$TARGET_DIR/release/portcullis"
BENCH="$TARGET_DIR/release/examples/mcp_bench"

# listening line of a process writing to $1: prints its http address
wait_listening() {
  for _ in $(seq 1 600); do
    if grep -q '"listening"' "$1" 2>/dev/null; then
      grep '"listening"' "$1" | head -1 | sed 's/.*"http":"\([^"]*\)".*/\1/'
      return
    fi
    sleep 0.1
  done
  echo "no listening line in $1" >&2; exit 1
}

"$BIN" fixture-server --http 127.0.0.1:0 >"$WORK/fixture.out" 2>"$WORK/fixture.err" & PIDS+=($!)
UPSTREAM="$(wait_listening "$WORK/fixture.out")"

# A secret in the environment makes the redactor scan every result; a rule checks every echo.
cat >"$WORK/portcullis.toml" <<TOML
[secrets.env]
bench_secret = "BENCH_SECRET"

[tools]
pin_mode = "strict"

[[tools.rules]]
name = "no-private-keys"
tools = ["fx.*"]
kind = "deny"
pattern = "BEGIN [A-Z ]*PRIVATE KEY"

[[upstreams]]
name = "fx"
max_concurrent = 256
[upstreams.http]
url = "http://$UPSTREAM/mcp"
headers_from_secrets = { "X-Bench-Secret" = "bench_secret" }
TOML
BENCH_SECRET="bench-secret-value-not-in-any-answer" PORTCULLIS_LOG=warn \
  PORTCULLIS_EGRESS_PROXY_BIND="" PORTCULLIS_EGRESS_DNS_BIND="" PORTCULLIS_SERVER_BIND=127.0.0.1:0 \
  "$BIN" serve --config "$WORK/portcullis.toml" --data-dir "$WORK/data" >"$WORK/gateway.out" 2>"$WORK/gateway.err" & PIDS+=($!)
GATEWAY="$(wait_listening "$WORK/gateway.out")"
ADMIN="$(cat "$WORK/data/admin.token")"
for _ in $(seq 1 600); do
  if curl -sf -H "Authorization: Bearer $ADMIN" "http://$GATEWAY/admin/tools" | grep -q '"status":"up"'; then break; fi
  sleep 0.1
done
curl -sf -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' -d '{}' \
  "http://$GATEWAY/admin/tools/pin" >/dev/null
TOKEN="$(curl -sf -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
  -d '{"id":"bench","allow":["io:ingress:tools.fx","io:egress:tools.fx","tools:call:fx.*"]}' "http://$GATEWAY/admin/agents" \
  | sed 's/.*"token":"\([^"]*\)".*/\1/')"

echo "machine: $(nproc) cores; fixture at $UPSTREAM, Portcullis at $GATEWAY"
"$BENCH" --direct "http://$UPSTREAM/mcp" --direct-tool echo \
  --gateway "http://$GATEWAY/mcp" --gateway-tool fx.echo --token "$TOKEN" \
  --sequential "$CALLS" --concurrency "$CLIENTS" --secs "$SECS"
