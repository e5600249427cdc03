#!/usr/bin/env bash
# Run the router locally in front of a real model: SmolLM2-135M served by llama-cpp-python on
# 127.0.0.1:18080, and `router serve --config routes.yaml` (whose /chat/local route points at it) on
# 127.0.0.1:8080. Ctrl-C stops both.
#
# Environment: LLAMA_PORT (18080; routes.yaml must agree), MODEL_WAIT_SECONDS (60).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
bash deploy/local/setup.sh

py=.venv/bin/python
llama_port=${LLAMA_PORT:-18080}
models_url=http://127.0.0.1:$llama_port/v1/models
wait_seconds=${MODEL_WAIT_SECONDS:-60}
model=$("$py" deploy/local/model_path.py)
llama_log=$(mktemp -t router-llama-server.XXXXXX.log)

children=()
any_alive() {
    local pid
    for pid in "${children[@]}"; do kill -0 "$pid" 2>/dev/null && return 0; done
    return 1
}
stop_children() {
    local status=$? pid i
    trap - INT TERM EXIT
    for pid in "${children[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    # Give them 10 s to finish what they are serving, then insist.
    for ((i = 0; i < 100; i++)); do
        any_alive || break
        sleep 0.1
    done
    for pid in "${children[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    exit "$status"
}
trap stop_children EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

models_answer() {
    "$py" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2).read()' \
        "$models_url" 2>/dev/null
}

if models_answer; then
    echo "run: a model server already answers on $models_url; using it"
else
    echo "run: starting llama-cpp-python with $(basename "$model") on 127.0.0.1:$llama_port (log: $llama_log)"
    "$py" -m llama_cpp.server --model "$model" --host 127.0.0.1 --port "$llama_port" \
        --model_alias smollm2 --n_ctx 2048 --interrupt_requests False >"$llama_log" 2>&1 &
    children+=($!)
    deadline=$((SECONDS + wait_seconds))
    until models_answer; do
        if ! kill -0 "${children[0]}" 2>/dev/null; then
            echo "run: the model server exited; the end of its log ($llama_log):" >&2
            tail -n 20 "$llama_log" >&2
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            echo "run: the model server did not answer $models_url within ${wait_seconds}s;" \
                "see $llama_log, or raise MODEL_WAIT_SECONDS" >&2
            exit 1
        fi
        sleep 0.5
    done
    echo "run: model server ready"
fi

cat <<EOF
run: router on http://127.0.0.1:8080 (Ctrl-C stops it and the model server). Try:
  curl -s http://127.0.0.1:8080/chat/local -H 'content-type: application/json' \\
    -d '{"messages": [{"role": "user", "content": "Say hello in five words."}]}'
EOF
# In the background and waited for, so that a TERM sent to this script reaches the trap at once.
.venv/bin/router serve --config routes.yaml &
children+=($!)
wait "${children[-1]}"
