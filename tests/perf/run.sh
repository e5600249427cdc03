#!/usr/bin/env bash
# The router's benchmark in one command: installs wrk and nginx (Debian) if missing, then runs
# `python -m tests.perf` (see tests/perf/__main__.py), which prints the table and writes tests/perf/results.md.
# LiteLLM (pinned) goes into its own virtualenv, tests/perf/.litellm-venv; if that fails, its rows say why.
#   bash tests/perf/run.sh                # about 5 minutes (plus about 1 minute for LiteLLM's first install)
#   bash tests/perf/run.sh --no-litellm   # without LiteLLM (nor its install)
#   bash tests/perf/run.sh --no-hold      # without holding 2,000 slow streams
#   bash tests/perf/run.sh --profile      # plus py-spy profiles of the router under load (installs py-spy)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || missing+=(nginx)
command -v taskset >/dev/null || missing+=(util-linux)
if ((${#missing[@]})); then
    echo "installing ${missing[*]} (apt-get) ..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Debian starts its nginx service on install; the benchmark runs its own, so stop that one if it runs.
    if [[ " ${missing[*]} " == *" nginx "* ]] && command -v service >/dev/null; then service nginx stop >/dev/null 2>&1 || true; fi
fi
if [[ " $* " == *" --profile "* ]] && [[ ! -x .venv/bin/py-spy ]]; then
    .venv/bin/pip install -q py-spy
fi

LITELLM_PIN="litellm[proxy]==1.106.2"
venv=tests/perf/.litellm-venv
if [[ " $* " != *" --no-litellm "* ]] \
    && ! "$venv/bin/python" -c "import importlib.metadata as m; assert m.version('litellm') == '${LITELLM_PIN#*==}'" 2>/dev/null; then
    echo "installing $LITELLM_PIN into $venv (pip) ..."
    if ! { python3 -m venv "$venv" && timeout 300 "$venv/bin/pip" install -q "$LITELLM_PIN"; } >"$venv.log" 2>&1; then
        LITELLM_UNAVAILABLE="pip install $LITELLM_PIN failed: $(grep -v '^WARNING' "$venv.log" | tail -1)"
        export LITELLM_UNAVAILABLE
        echo "$LITELLM_UNAVAILABLE (going on without it)"
    fi
fi

# 2,000 held streams need thousands of open files: raise the limit as far as allowed.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

# The Python side stops everything it started on exit; this trap makes sure it exits when we do.
export PERF_COMMAND="bash tests/perf/run.sh $*"
.venv/bin/python -m tests.perf "$@" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null; wait "$pid"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
wait "$pid"
status=$?
trap - EXIT
exit "$status"
