#!/usr/bin/env bash
# Everything a fresh machine needs, idempotent and quick when already done:
#   1. system packages (Debian/Ubuntu, when run as root or with passwordless sudo):
#      mricron-data (real brain MRI + atlas for the samples), Xvfb and the xcb/GL
#      libraries Qt needs headless;
#   2. a Python environment: the active virtualenv/conda env if there is one,
#      otherwise ./.venv (created if missing);
#   3. torch, chosen so a machine without an NVIDIA GPU never pulls a CUDA build,
#      and a torch that is already installed (e.g. a CUDA build) is kept;
#   4. this package with the PyQt6 binding and the test tools (pytest, import-linter, mypy, ...).
# Prints the environment's python path on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

SYSTEM_PACKAGES="mricron-data xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-cursor0 \
libxcb-image0 libxcb-render-util0 libxcb-randr0 libxcb-shape0 libxcb-xfixes0 libxkbcommon-x11-0 \
libgl1 libegl1 libfontconfig1 libdbus-1-3"
TORCH_SPEC="${ALSEG_TORCH_SPEC:-torch==2.13.0}"

log() { echo "[setup] $*" >&2; }
# pip warns about every stray file on a local find-links path; those lines say nothing about this install
quiet_pip() { grep -v "is ignored: it is neither" || true; }

install_system_packages() {
    command -v dpkg-query >/dev/null || { log "not a Debian system: install mricron-data and Xvfb yourself (see README)"; return 0; }
    local missing=()
    for pkg in $SYSTEM_PACKAGES; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if sudo -n true 2>/dev/null; then sudo="sudo -n"; else
            log "missing system packages (need root): ${missing[*]}"
            log "run: sudo apt-get install -y ${missing[*]}"
            return 0
        fi
    fi
    log "installing system packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

choose_python() {
    if [ -n "${VIRTUAL_ENV:-}" ]; then echo "$VIRTUAL_ENV/bin/python"; return; fi
    if [ -n "${CONDA_PREFIX:-}" ]; then echo "$CONDA_PREFIX/bin/python"; return; fi
    if [ ! -x .venv/bin/python ]; then
        local base="${PYTHON:-python3}"
        "$base" -c 'import sys; assert sys.version_info >= (3, 10), sys.version' \
            || { log "Python >= 3.10 is required ($base is too old)"; exit 1; }
        log "creating .venv with $("$base" --version)"
        "$base" -m venv .venv
    fi
    echo "$PWD/.venv/bin/python"
}

install_torch() {
    local python="$1"
    if "$python" -c 'import torch' 2>/dev/null; then
        log "keeping installed torch $("$python" -c 'import torch; print(torch.__version__)')"
        return
    fi
    if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
        log "NVIDIA GPU found: installing ${ALSEG_TORCH_SPEC:-torch} (CUDA build)"
        "$python" -m pip install -q "${ALSEG_TORCH_SPEC:-torch}"
    else
        log "no NVIDIA GPU: installing CPU torch ($TORCH_SPEC${ALSEG_TORCH_INDEX:+ from $ALSEG_TORCH_INDEX})"
        "$python" -m pip install -q "$TORCH_SPEC" ${ALSEG_TORCH_INDEX:+--index-url "$ALSEG_TORCH_INDEX"} 2>&1 \
            | quiet_pip >&2
    fi
    "$python" -W ignore -c 'import torch' || { log "torch installation failed"; exit 1; }
}

install_package() {
    local python="$1" stamp
    stamp="$(dirname "$python")/../.alseg-installed"
    local want
    want="$(sha256sum < pyproject.toml | cut -c1-16)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$python" -c 'import napari_alseg' 2>/dev/null; then
        return
    fi
    log "installing napari-alseg[pyqt6,testing] (editable)"
    "$python" -m pip install -q -e ".[pyqt6,testing]" 2>&1 | quiet_pip >&2
    "$python" -c 'import napari_alseg, napari, monai, torch, importlinter, mypy' || { log "installation failed"; exit 1; }
    echo "$want" > "$stamp"
}

install_system_packages
PYTHON_BIN="$(choose_python)"
install_torch "$PYTHON_BIN"
install_package "$PYTHON_BIN"
echo "$PYTHON_BIN"
