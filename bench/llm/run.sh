#!/usr/bin/env bash
# LLM proxy benchmark (never run in CI). On loopback, in one run, against the same fake provider
# (`portcullis fixture-llm`): non-streamed chat completions directly, through Portcullis (sanitize
# with synthetic values and restore, a USD budget with reservation and settle, policy, ledger),
# and through the LiteLLM proxy (`litellm[proxy]`, pinned, installed into .tools/litellm-venv,
# started with LITELLM_LOCAL_MODEL_COST_MAP=True and a master key). Reports sequential median and
# p99 and the added latency against the direct calls, then requests/s with 64 concurrent clients.
# Usage: bench/llm/run.sh   (env: REQUESTS, CLIENTS, SECS, TARGET_DIR, NO_LITELLM=1,
#                             PROFILE=release|dev: dev figures are only for a smoke run)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
TARGET_DIR="${TARGET_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}}"
REQUESTS="${REQUESTS:-2000}"
CLIENTS="${CLIENTS:-64}"
SECS="${SECS:-10}"
LITELLM_PIN="litellm[proxy]==1.80.0"
VENV="$ROOT/.tools/litellm-venv"
WORK="$(mktemp -d /tmp/llm-bench.XXXXXX)"
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

PROFILE="${PROFILE:-release}"
OUT_DIR="$([[ $PROFILE == dev ]] && echo debug || echo "$PROFILE")"
CARGO_TARGET_DIR="$TARGET_DIR" cargo build --profile "$PROFILE" -q -p portcullis-cli
CARGO_TARGET_DIR="$TARGET_DIR" cargo build --profile "$PROFILE" -q -p portcullis-llm-fixture --example llm_bench
BIN="$TARGET_DIR/$OUT_DIR/portcullis"
BENCH="$TARGET_DIR/$OUT_DIR/examples/llm_bench"

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

"$BIN" fixture-llm --port 0 >"$WORK/fixture.out" 2>"$WORK/fixture.err" & PIDS+=($!)
PROVIDER="$(wait_listening "$WORK/fixture.out")"

cat >"$WORK/portcullis.toml" <<TOML
[secrets.env]
fx_key = "BENCH_PROVIDER_KEY"
pii_key = "BENCH_PII_KEY"

[pii]
key_secret = "pii_key"
strategies = { email = "synthetic", phone = "synthetic", credit_card = "synthetic", secret = "synthetic" }

[llm]
default_max_tokens = 256

[[llm.providers]]
name = "fx"
base_url = "http://$PROVIDER/v1"
api_key_secret = "fx_key"
models = ["gpt-4o-mini"]

[budgets.prices.models."gpt-4o-mini"]
input_per_1m = "0.15"
output_per_1m = "0.60"

[[budgets.budgets]]
id = "bench-agent"
scope = "agent"
unit = "usd"
window = "month"
limit = "100000.00"
TOML
BENCH_PROVIDER_KEY="bench-provider-key-0123456789" BENCH_PII_KEY="bench-pii-key-0123456789abcdef" \
  PORTCULLIS_LOG=warn PORTCULLIS_EGRESS_PROXY_BIND="" PORTCULLIS_EGRESS_DNS_BIND="" \
  PORTCULLIS_SERVER_BIND=127.0.0.1:0 \
  "$BIN" serve --config "$WORK/portcullis.toml" --data-dir "$WORK/data" >"$WORK/gateway.out" 2>"$WORK/gateway.err" & PIDS+=($!)
GATEWAY="$(wait_listening "$WORK/gateway.out")"
ADMIN="$(cat "$WORK/data/admin.token")"
TOKEN="$(curl -sf -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
  -d '{"id":"bench","allow":["llm:model:*","io:ingress:chat","io:egress:chat","io:ingress:llm.*"]}' "http://$GATEWAY/admin/agents" \
  | sed 's/.*"token":"\([^"]*\)".*/\1/')"
TARGETS="direct=http://$PROVIDER/v1=none,portcullis=http://$GATEWAY/v1=$TOKEN"

if [[ "${NO_LITELLM:-}" != 1 ]]; then
  if [[ ! -x "$VENV/bin/litellm" || "$(cat "$VENV/.portcullis-stamp" 2>/dev/null)" != "$LITELLM_PIN" ]]; then
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "$LITELLM_PIN"
    printf '%s' "$LITELLM_PIN" >"$VENV/.portcullis-stamp"
  fi
  cat >"$WORK/litellm.yaml" <<YAML
model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: http://$PROVIDER/v1
      api_key: bench-provider-key-0123456789
YAML
  LITELLM_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_MASTER_KEY="sk-bench-master-key" LITELLM_LOG=ERROR \
    "$VENV/bin/litellm" --config "$WORK/litellm.yaml" --host 127.0.0.1 --port "$LITELLM_PORT" \
    >"$WORK/litellm.out" 2>"$WORK/litellm.err" & PIDS+=($!)
  for _ in $(seq 1 1200); do
    if curl -sf "http://127.0.0.1:$LITELLM_PORT/health/liveliness" >/dev/null 2>&1; then break; fi
    sleep 0.1
  done
  TARGETS="$TARGETS,litellm=http://127.0.0.1:$LITELLM_PORT/v1=sk-bench-master-key"
fi

echo "machine: $(nproc) cores; provider at $PROVIDER, Portcullis at $GATEWAY"
"$BENCH" --targets "$TARGETS" --sequential "$REQUESTS" --concurrency "$CLIENTS" --secs "$SECS"
