#!/usr/bin/env bash
# The Debian packages the Python tests need beyond the workspace's own
# (scripts/install-deps.sh): PyPI's PyGObject and pycairo have no Linux
# wheels, so pip builds them against these; the GTK example's self-test
# (tests/test_gtk_example.py) needs GTK 4's typelib and Xvfb. Installs only
# what is missing.
set -euo pipefail

need=()
for pkg in pkg-config gcc libglib2.0-dev libgirepository1.0-dev libcairo2-dev \
    gir1.2-gtk-4.0 xvfb xauth; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0

echo "installing system packages for the Python tests: ${need[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "need root (or sudo) to install: ${need[*]}" >&2; exit 1; }
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${need[@]}"
