#!/usr/bin/env bash
# How throughput scales with `router serve --workers N` on this machine's cores: nginx answers a fixed
# chat.completion, wrk (2 threads, 50 connections, unpinned: it shares the cores with the workers) posts
# through a router with 1, then 2 workers. Loopback only; about 40 s; stops everything it started.
#   bash tests/perf/workers.sh            # in-memory state (sessions off: several workers cannot share them)
#   bash tests/perf/workers.sh --redis    # shared state on a local redis-server: sessions on, and a client
#                                         # key with a rate limit (never reached) taken in Redis per request
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
    echo "run tests/perf/run.sh once first (it installs wrk and nginx)"
    exit 1
fi
dir=$(mktemp -d /tmp/router-workers-XXXXXX)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

upstream=$(port)
cat >"$dir/nginx.conf" <<CONF
worker_processes 1; daemon off; error_log $dir/error.log; pid $dir/nginx.pid;
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.1:$upstream;
  location /v1/chat/completions { default_type application/json; return 200 '{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}'; }
  location /v1/models { default_type application/json; return 200 '{"data":[{"id":"m"}]}'; } } }
CONF
nginx -p "$dir" -c "$dir/nginx.conf" & pids+=($!)
cat >"$dir/routes.yaml" <<YAML
version: 1
upstreams: {ng: {type: openai, base_url: "http://127.0.0.1:$upstream/v1"}}
routes: [{path: /chat/m, model: m, upstream: ng}]
YAML
if [[ ${1:-} == --redis ]]; then
    redis=$(port)
    redis-server --port "$redis" --bind 127.0.0.1 --save '' --appendonly no >"$dir/redis.log" 2>&1 & pids+=($!)
    cat >>"$dir/routes.yaml" <<YAML
state: {backend: redis, url: "redis://127.0.0.1:$redis/0"}
auth: {api_keys: [{name: bench, key: bench-key-0123456789, rate_limit_per_minute: 1000000000}]}
YAML
    label="state.backend redis, a keyed rate limit, sessions on"
else
    echo "sessions: {enabled: false}  # several workers cannot share in-memory sessions" >>"$dir/routes.yaml"
    label="state.backend memory, sessions off"
fi
cat >"$dir/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench-key-0123456789"
wrk.body = '{"messages":[{"role":"user","content":"hi"}]}'
LUA

declare -A rps
for workers in 1 2; do
    listen=$(port)
    .venv/bin/router serve --config "$dir/routes.yaml" --port "$listen" --workers "$workers" >"$dir/router-$workers.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$listen/healthz" >/dev/null && break; sleep 0.1; done
    wrk -t2 -c50 -d3s -s "$dir/post.lua" "http://127.0.0.1:$listen/chat/m" >/dev/null  # warm up
    rps[$workers]=$(wrk -t2 -c50 -d8s -s "$dir/post.lua" "http://127.0.0.1:$listen/chat/m" | awk '/Requests\/sec/ {print $2}')
    kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
done
echo "$label"
printf '| workers | req/s at 50 clients | vs 1 worker |\n|---|---|---|\n'
printf '| 1 | %s | 1.00 |\n| 2 | %s | %.2f |\n' "${rps[1]}" "${rps[2]}" "$(echo "${rps[2]} / ${rps[1]}" | bc -l)"
echo "($(nproc) cores; wrk and nginx share them with the workers)"
