#!/usr/bin/env bash
# Egress proxy benchmark (never run in CI). On loopback, in one run:
#  (a) CONNECT tunnel throughput for a 1 GiB transfer through Portcullis vs direct;
#  (b) HTTP forward requests/s and p50/p99 latency with 64 keep-alive connections: direct,
#      through Portcullis, and through Squid configured with the same allowlist and Basic auth.
# Usage: bench/egress/run.sh   (env: BYTES, CONNS, SECS, TARGET_DIR)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
TARGET_DIR="${TARGET_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}}"
BYTES="${BYTES:-1073741824}"
CONNS="${CONNS:-64}"
SECS="${SECS:-10}"
WORK="$(mktemp -d /tmp/egress-bench.XXXXXX)"
chmod 777 "$WORK" # squid drops to its own user and must read and write here
HTTP_PORT=18080
SINK_PORT=18081
PROXY_PORT=18091
SQUID_PORT=18128
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [ -f "$WORK/squid.pid" ]; then kill "$(cat "$WORK/squid.pid")" 2>/dev/null || true; fi
}
trap cleanup EXIT

if ! command -v squid >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y squid >/dev/null
fi

CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release -q -p portcullis-egress --example egress_bench
BIN="$TARGET_DIR/release/examples/egress_bench"

"$BIN" origin --http "127.0.0.2:$HTTP_PORT" --sink "127.0.0.2:$SINK_PORT" & PIDS+=($!)
"$BIN" proxy --bind "127.0.0.1:$PROXY_PORT" \
  --allow "svc.test:$HTTP_PORT,svc.test:$SINK_PORT" --cidr 127.0.0.2/32 \
  --fixture '{"svc.test":{"A":["127.0.0.2"]}}' & PIDS+=($!)

# Squid: the same allowlist (svc.test on the two ports), Basic auth for the same agent, names
# from a hosts file (no DNS), no cache, no access log.
printf 'bench:%s\n' "$(openssl passwd -apr1 bench-token)" > "$WORK/passwd"
printf '127.0.0.2 svc.test\n' > "$WORK/hosts"
NCSA="$( (ls /usr/lib/squid/basic_ncsa_auth /usr/lib64/squid/basic_ncsa_auth 2>/dev/null || true) | head -1)"
cat > "$WORK/squid.conf" <<CONF
http_port 127.0.0.1:$SQUID_PORT
pid_filename $WORK/squid.pid
cache_log $WORK/cache.log
access_log none
cache deny all
cache_mem 8 MB
hosts_file $WORK/hosts
dns_nameservers 127.0.0.1
auth_param basic program $NCSA $WORK/passwd
auth_param basic children 8 startup=8 idle=4
auth_param basic credentialsttl 1 hour
acl authed proxy_auth REQUIRED
acl allowed_host dstdomain svc.test
acl allowed_port port $HTTP_PORT $SINK_PORT
acl CONNECT method CONNECT
http_access deny !authed
http_access allow allowed_host allowed_port
http_access deny all
forwarded_for delete
via off
shutdown_lifetime 1 seconds
CONF
squid -N -f "$WORK/squid.conf" & PIDS+=($!)

for _ in $(seq 50); do
  if curl -s -o /dev/null -x "http://127.0.0.1:$SQUID_PORT" -U bench:bench-token "http://svc.test:$HTTP_PORT/" \
     && curl -s -o /dev/null -x "http://127.0.0.1:$PROXY_PORT" -U bench:bench-token "http://svc.test:$HTTP_PORT/"; then
    break
  fi
  sleep 0.2
done

echo "== (a) CONNECT throughput, $BYTES bytes"
"$BIN" tunnel --via direct --addr "127.0.0.2:$SINK_PORT" --bytes "$BYTES"
"$BIN" tunnel --via "127.0.0.1:$PROXY_PORT" --target "svc.test:$SINK_PORT" --bytes "$BYTES"
"$BIN" tunnel --via "127.0.0.1:$SQUID_PORT" --target "svc.test:$SINK_PORT" --bytes "$BYTES" || echo "squid tunnel failed"

echo "== (b) HTTP forward, $CONNS connections, ${SECS}s each"
URL="http://svc.test:$HTTP_PORT/"
"$BIN" load --via direct --url "$URL" --addr "127.0.0.2:$HTTP_PORT" --conns "$CONNS" --secs "$SECS"
"$BIN" load --via "127.0.0.1:$PROXY_PORT" --url "$URL" --addr "127.0.0.2:$HTTP_PORT" --conns "$CONNS" --secs "$SECS"
"$BIN" load --via "127.0.0.1:$SQUID_PORT" --url "$URL" --addr "127.0.0.2:$HTTP_PORT" --conns "$CONNS" --secs "$SECS"
