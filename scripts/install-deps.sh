#!/usr/bin/env bash
# Install the system packages the workspace needs, only those missing.
# glib/gtk4 -sys crates need the -dev packages; the GTK and winit examples'
# self-tests run under Xvfb (winit and softbuffer load the X11 client
# libraries at run time); the perf gate counts instructions under
# valgrind's callgrind. Everything comes from Debian's archive.
set -euo pipefail

need=()
for pkg in pkg-config libglib2.0-dev libgtk-4-dev xvfb xauth valgrind \
    libx11-6 libx11-xcb1 libxcursor1 libxi6 libxrandr2 libxkbcommon-x11-0 libxcb1; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0

echo "installing system packages: ${need[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "need root (or sudo) to install: ${need[*]}" >&2; exit 1; }
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${need[@]}"
