#!/usr/bin/env bash
# Builds the image from the Dockerfile, brings up docker-compose.yml, and checks what a
# user relies on: the right statuses, exactly the identity headers the app saw, forged
# headers stripped, the uid, and a clean SIGTERM stop within the drain deadline.
#
# Uses a working `docker` with the compose plugin when there is one; otherwise the
# podman helpers in ../shared/tools (SHARED_TOOLS overrides the folder). The override
# file swaps the app for a locally built echo image, because public images cannot be
# pulled here; the gate image and docker-compose.yml are used unchanged.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
project="cgsmoke$$"
passed=0

say() { printf 'smoke: %s\n' "$*"; }
fail() {
  say "FAIL: $*" >&2
  dc logs 2>/dev/null | tail -n 40 >&2 || true
  say "$passed passed, 1 failed"
  exit 1
}
ok() { passed=$((passed + 1)); say "ok: $*"; }

if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
  engine=(docker)
  compose=(docker compose)
else
  tools="${SHARED_TOOLS:-$root/../shared/tools}"
  [ -x "$tools/podman-here" ] || { say "FAIL: no working docker, and no $tools/podman-here"; exit 1; }
  "$tools/standin-base-images"
  engine=("$tools/podman-here")
  compose=("$tools/compose-here")
  export PODMAN_HERE_QUIET=1
fi

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
GATE_PORT=$(free_port)
ISSUER_PORT=$(free_port)
export GATE_PORT ISSUER_PORT
dc() { "${compose[@]}" -p "$project" -f docker-compose.yml -f tests/container/compose.override.yml "$@"; }
teardown() { dc down -v -t 5 >/dev/null 2>&1 || true; }
trap teardown EXIT

say "building the images"
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
"${engine[@]}" build --build-arg "GATE_BUILD_COMMIT=$commit" -t cognito-gate:local .
"${engine[@]}" build --build-arg "GATE_BUILD_COMMIT=$commit" --target dev-issuer -t cognito-gate-dev-issuer:local .
"${engine[@]}" build -t cognito-gate-echo:test tests/container/echo
size=$("${engine[@]}" image inspect cognito-gate:local --format '{{.Size}}')
say "image size: $size bytes ($((size / 1000 / 1000)) MB)"
[ "$size" -lt 40000000 ] && ok "image is under 40 MB" || fail "image is $size bytes, over 40 MB"

# The production image cannot mint tokens: no dev-issuer or demo subcommand, and none
# of the development issuer's code in its binary.
if out=$("${engine[@]}" run --rm cognito-gate:local dev-issuer 2>&1); then
  fail "the default image ran dev-issuer: $out"
fi
grep -q "unrecognized subcommand 'dev-issuer'" <<<"$out" || fail "dev-issuer was not refused as unknown: $out"
if out=$("${engine[@]}" run --rm cognito-gate:local demo 2>&1); then
  fail "the default image ran demo: $out"
fi
binary=$(mktemp)
cid=$("${engine[@]}" create cognito-gate:local)
"${engine[@]}" cp "$cid:/usr/local/bin/cognito-gate" "$binary" >/dev/null
"${engine[@]}" rm "$cid" >/dev/null
grep -qa "DEVELOPMENT ONLY" "$binary" && fail "the default image's binary contains the development issuer"
rm -f "$binary"
ok "the default image has no dev-issuer and no demo, and no token minter in its binary"

version=$("${engine[@]}" run --rm cognito-gate:local --version)
[ "$version" = "cognito-gate $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | sed -n 1p) (commit $commit)" ] \
  && ok "--version names the commit: $version" || fail "--version says: $version"

say "starting the stack (gate on 127.0.0.1:$GATE_PORT, issuer on 127.0.0.1:$ISSUER_PORT)"
dc up -d
container_of() {
  "${engine[@]}" ps -a -q \
    --filter "label=com.docker.compose.project=$project" \
    --filter "label=com.docker.compose.service=$1" | sed -n 1p
}
gate=$(container_of gate)
[ -n "$gate" ] || fail "no gate container"

status=""
for _ in $(seq 120); do
  status=$("${engine[@]}" inspect --format '{{.State.Health.Status}}' "$gate" 2>/dev/null || true)
  [ "$status" = healthy ] && break
  sleep 1
done
[ "$status" = healthy ] && ok "the gate's healthcheck reports healthy" || fail "the gate never became healthy (last: $status)"

# request METHOD PATH [curl args...]: sets $code and $body.
request() {
  local out
  out=$(curl -s -w '\n%{http_code}' -X "$1" "http://127.0.0.1:$GATE_PORT$2" "${@:3}")
  code=${out##*$'\n'}
  body=${out%$'\n'*}
}

admin_token=$(curl -sf "http://127.0.0.1:$ISSUER_PORT/token?sub=alice&groups=admins")
plain_token=$(curl -sf "http://127.0.0.1:$ISSUER_PORT/token?sub=bob")

request GET /admin/hello -H "Authorization: Bearer $admin_token" \
  -H "X-User-Sub: forged" -H "x_user_sub: forged" -H "X.User.Groups: forged"
[ "$code" = 200 ] || fail "admin token on /admin/hello: $code"
[ "$(grep -ci '^x-user-sub:' <<<"$body")" = 1 ] || fail "the app did not see exactly one X-User-Sub: $body"
grep -qi '^x-user-sub: alice$' <<<"$body" || fail "the app did not see X-User-Sub: alice: $body"
[ "$(grep -ci '^x-user-groups:' <<<"$body")" = 1 ] || fail "the app did not see exactly one X-User-Groups: $body"
grep -qi '^x-user-groups: admins$' <<<"$body" || fail "the app did not see X-User-Groups: admins: $body"
grep -qi 'forged' <<<"$body" && fail "a forged identity header reached the app: $body"
ok "an admin token gets 200, and the app saw exactly X-User-Sub: alice and X-User-Groups: admins"

request GET /public/page -H "X-User-Sub: forged"
[ "$code" = 200 ] || fail "public path: $code"
grep -qi 'x-user-sub' <<<"$body" && fail "a client-sent X-User-Sub reached the app on a public path: $body"
ok "a client-sent X-User-Sub never reaches the app"

request GET /admin/hello
[ "$code" = 401 ] || fail "no token: $code"
ok "no token gets 401"

request GET /admin/hello -H "Authorization: Bearer $plain_token"
[ "$code" = 403 ] || fail "token without the admins group: $code"
ok "a token in the wrong group gets 403"

# The shipped container.toml writes JSON lines (docker-compose.yml does not set the
# format): every line parses, none has a colour code, and the access line of the
# admin request above carries its request id, client and latency as a number.
gate_log=$(mktemp)
"${engine[@]}" logs "$gate" >"$gate_log" 2>&1
python3 - "$gate_log" <<'PY' || fail "the gate's logs are not JSON lines: $(head -c 2000 "$gate_log")"
import json, sys
lines = [l for l in open(sys.argv[1], encoding="utf-8").read().splitlines() if l.strip()]
assert lines, "no log lines"
assert not any("\x1b" in l for l in lines), "escape codes in the log"
records = [json.loads(l) for l in lines]
access = [r for r in records if r.get("target") == "cognito_gate::access" and r.get("path") == "/admin/hello" and r.get("status") == 200]
assert access, "no access line for the admin request"
a = access[0]
assert isinstance(a["latency_ms"], (int, float)), a
assert len(a["request_id"]) == 32 and a["client"] != "-", a
assert "Bearer" not in open(sys.argv[1]).read(), "a token was logged"
PY
ok "the container's logs are JSON lines without colour codes, with request ids"

# distroless has no ps: read the real uid of the container's main process on the host.
pid=$("${engine[@]}" inspect --format '{{.State.Pid}}' "$gate")
uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")
[ "$uid" = 65532 ] && ok "the gate process runs as uid 65532" || fail "the gate runs as uid '$uid'"

ro=$("${engine[@]}" inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$gate")
[ "$ro" = true ] && ok "the gate runs on a read-only root filesystem" || fail "the root filesystem is not read-only ($ro)"

mem=$("${engine[@]}" stats --no-stream --format '{{.MemUsage}}' "$gate" 2>/dev/null | head -n 1 || true)
say "gate memory after the checks: ${mem:-unknown}"

start=$(date +%s%N)
"${engine[@]}" stop -t 15 "$gate" >/dev/null
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
exit_code=$("${engine[@]}" inspect --format '{{.State.ExitCode}}' "$gate")
[ "$exit_code" = 0 ] || fail "the gate exited with $exit_code after SIGTERM"
[ "$elapsed_ms" -lt 10000 ] || fail "the gate took ${elapsed_ms} ms to stop (drain deadline 10 s)"
ok "SIGTERM stops the gate in ${elapsed_ms} ms with exit code 0"

say "$passed passed, 0 failed"
