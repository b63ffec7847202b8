#!/usr/bin/env bash
# Set up (or reuse) .venv with the test extras and run the whole test suite on the CPU.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k operators`.
# The napari GUI tests run headless under Xvfb (pytest-xvfb starts it); on Debian/Ubuntu the
# system libraries Qt and Xvfb need are installed with apt-get when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Xvfb, Mesa's software OpenGL (napari's canvas) and the X/xcb libraries of Qt's xcb platform plugin.
gui_packages=(
    xvfb libgl1 libegl1 libgl1-mesa-dri libglx-mesa0 libglib2.0-0 libfontconfig1 libfreetype6 libdbus-1-3
    libx11-xcb1 libxkbcommon0 libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0
    libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1 libxcb-cursor0
)
install_gui_packages() {
    command -v dpkg >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 || {
        echo "test.sh: no dpkg/apt-get here; install Xvfb and Qt's xcb libraries yourself (GUI tests skip without a display)" >&2
        return 0
    }
    local missing=() package
    for package in "${gui_packages[@]}"; do
        dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo=(sudo)
        else
            echo "test.sh: missing ${missing[*]} and not root; GUI tests skip without a display" >&2
            return 0
        fi
    fi
    echo "test.sh: installing ${missing[*]}" >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
install_gui_packages

bash scripts/setup_env.sh test
export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES-}"
exec .venv/bin/python -m pytest "$@"
