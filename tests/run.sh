#!/usr/bin/env bash
# The project's test command: set up (deploy/local/setup.sh), lint, type-check, then the whole pytest suite.
# Extra arguments go to pytest (bash tests/run.sh -k reload). Exits non-zero if any step fails, and when
# pytest collected no test at all.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
bash deploy/local/setup.sh || { echo "run.sh: set-up failed (see above)" >&2; exit 1; }
export PATH="$PWD/.venv/bin:$PATH"

failed=()
step() {
    echo "==> $*"
    "$@" || failed+=("$*")
}
step ruff check router tests
step ruff format --check router tests
step mypy

echo "==> pytest $*"
pytest "$@"
status=$?
if ((status == 5)); then
    failed+=("pytest (no tests were collected)")
elif ((status != 0)); then
    failed+=("pytest (exit $status)")
fi

if ((${#failed[@]})); then
    printf 'run.sh: failed: %s\n' "${failed[@]}" >&2
    exit 1
fi
