#!/usr/bin/env bash
# Soak: MINUTES (default 10) of mixed traffic against a gate this script starts on
# loopback, checking every answer and watching the gate's memory and open files.
#
# The gate is `cognito-gate run` on its defaults (access log on, to a file) with
# config/policy.toml, in front of a Python app that echoes what it received and speaks
# WebSocket; `cognito-gate dev-issuer` mints the tokens. Eight client threads send, in
# turn: an allowed request carrying forged identity headers (the app must see exactly
# the token's identity), a garbage token and an expired one (401), a token without the
# group (403), anonymous public (200) and protected (401) requests, a dot-segment path
# (400), a 1 MiB upload (the app must receive every byte), and a WebSocket echo.
# Connections are reused and replaced now and then.
#
# The last line reads
#   unexpected=N rss_start_kib=A rss_end_kib=B fds_start=C fds_end=D
# with the RSS and open files sampled after a warm-up (a tenth of the run, at most
# 60 s) and at the end. The exit code is 1 if any answer was unexpected or the RSS
# grew by more than 10 %.
#
# Use: bench/soak.sh [MINUTES]   Needs: python3, curl. Builds the release binary.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-10}
cargo build --release --quiet
work=$(mktemp -d)
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
issuer_port=$(free_port); app_port=$(free_port); gate_port=$(free_port); admin_port=$(free_port)

./target/release/cognito-gate dev-issuer --listen "127.0.0.1:$issuer_port" >"$work/issuer.out" 2>&1 &
pids+=($!)
python3 bench/soak.py app "$app_port" 2>"$work/app.err" &
pids+=($!)
cat >"$work/gate.toml" <<TOML
listen = "127.0.0.1:$gate_port"
admin_listen = "127.0.0.1:$admin_port"
policy_file = "config/policy.toml"
[upstream]
url = "http://127.0.0.1:$app_port"
[[pools]]
user_pool_id = "us-east-1_DevPool1"
client_ids = ["dev-client"]
jwks_url = "http://127.0.0.1:$issuer_port/us-east-1_DevPool1/.well-known/jwks.json"
TOML
./target/release/cognito-gate run --config "$work/gate.toml" 2>"$work/gate.log" &
gate_pid=$!
pids+=("$gate_pid")
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$admin_port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$admin_port/readyz" >/dev/null || { echo "bench/soak.sh: the gate did not become ready:" >&2; cat "$work/gate.log" >&2; exit 1; }

echo "soak: $minutes min of mixed traffic, 8 clients, gate pid $gate_pid"
python3 bench/soak.py drive "127.0.0.1:$gate_port" "http://127.0.0.1:$issuer_port" "$((minutes * 60))" "$gate_pid" 8
