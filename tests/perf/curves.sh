#!/usr/bin/env bash
# The curves in one command (tests/perf/curves.py): installs wrk and nginx (Debian), the Portkey gateway (npm,
# into tests/perf/.portkey) and LiteLLM (pip, into tests/perf/.litellm-venv) if missing, then runs the
# latency, stream and cost curves (about 12-15 minutes, bounded; loopback only) and writes
# tests/perf/results/*.csv, *.png and curves.md. Arguments go to `python -m tests.perf.curves`.
#   bash tests/perf/curves.sh                 # everything
#   bash tests/perf/curves.sh --no-litellm    # without LiteLLM (nor its install)
#   bash tests/perf/curves.sh --profile       # plus py-spy profiles of the router (installs py-spy)
#   bash tests/perf/curves.sh --soak          # only the soak: python -m tests.perf.soak (10 minutes)
#   bash tests/perf/curves.sh --all           # the curves, then the soak (about 25 minutes)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
python=${PYTHON:-.venv/bin/python}

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || missing+=(nginx)
command -v taskset >/dev/null || missing+=(util-linux)
if ((${#missing[@]})); then
    echo "installing ${missing[*]} (apt-get) ..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [[ " ${missing[*]} " == *" nginx "* ]] && command -v service >/dev/null; then service nginx stop >/dev/null 2>&1 || true; fi
fi
"$python" -c "import matplotlib" 2>/dev/null || "$python" -m pip install -q matplotlib
if [[ " $* " == *" --profile "* ]] && [[ ! -x "$(dirname "$python")/py-spy" ]]; then
    "$python" -m pip install -q py-spy
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [[ " $* " == *" --soak "* ]]; then
    exec "$python" -m tests.perf.soak
fi

# The Portkey gateway, pinned, from the npm registry, with @hono/node-server held at 1.14.2 (newer ones make
# the gateway fail with "TypeError: immutable": Portkey-AI/gateway issue 1389). Its streams still fail that
# way on node (issue 1550), so its stream rows say so.
PORTKEY_VERSION=1.15.2
portkey=tests/perf/.portkey
if [[ " $* " != *" --no-portkey "* ]] && command -v npm >/dev/null \
    && ! grep -qs "\"version\": \"$PORTKEY_VERSION\"" "$portkey/node_modules/@portkey-ai/gateway/package.json"; then
    echo "installing @portkey-ai/gateway@$PORTKEY_VERSION into $portkey (npm) ..."
    mkdir -p "$portkey"
    printf '{"name":"portkey-bench","private":true,"dependencies":{"@portkey-ai/gateway":"%s"},"overrides":{"@hono/node-server":"1.14.2"}}\n' \
        "$PORTKEY_VERSION" >"$portkey/package.json"
    (cd "$portkey" && timeout 300 npm install --no-audit --no-fund >npm.log 2>&1) || echo "npm install failed: see $portkey/npm.log (going on without Portkey)"
fi

LITELLM_PIN="litellm[proxy]==1.106.2"
venv=tests/perf/.litellm-venv
if [[ " $* " != *" --no-litellm "* ]] \
    && ! "$venv/bin/python" -c "import importlib.metadata as m; assert m.version('litellm') == '${LITELLM_PIN#*==}'" 2>/dev/null; then
    echo "installing $LITELLM_PIN into $venv (pip) ..."
    { python3 -m venv "$venv" && timeout 300 "$venv/bin/pip" install -q "$LITELLM_PIN"; } >"$venv.log" 2>&1 \
        || echo "pip install $LITELLM_PIN failed: see $venv.log (going on without LiteLLM)"
fi

export PERF_COMMAND="bash tests/perf/curves.sh $*"
args=()
soak_after=0
for a in "$@"; do
    if [[ $a == --all ]]; then soak_after=1; else args+=("$a"); fi
done
"$python" -m tests.perf.curves "${args[@]}" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null; wait "$pid"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
wait "$pid"
status=$?
trap - EXIT
if ((soak_after)) && ((status == 0)); then
    "$python" -m tests.perf.soak || status=$?
fi
exit "$status"
