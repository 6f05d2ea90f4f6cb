#!/usr/bin/env bash
# Installs everything ovbus needs on a fresh Debian/Ubuntu machine: system packages (when missing),
# a virtual environment in .venv, and the pinned Python packages. Safe to run again: it only does
# what is missing. Called by `make demo` and `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
# one bootstrap at a time (`make demo` in one terminal, `make test` in another): two pip or apt runs
# into the same .venv or dpkg database at once break both
mkdir -p .cache
exec 9>.cache/bootstrap.lock
flock 9

APT_PACKAGES=(
  mosquitto mosquitto-clients
  gstreamer1.0-tools gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 gir1.2-gstreamer-1.0
  gir1.2-gst-plugins-base-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
  ffmpeg libgirepository1.0-dev libcairo2-dev pkg-config python3-dev python3-venv
  # the browser test (tests/fleet/test_browser.py): Playwright drives Debian's Chromium
  chromium
)
# Node.js for the Node-RED integration test (Node-RED 4.x runs on Node >= 18.5; Debian 12 has 18)
command -v node >/dev/null 2>&1 || APT_PACKAGES+=(nodejs npm)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing system packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
elif ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null; then
  # the accuracy benchmark's photos come from a pinned Debian package (apt-get download),
  # which needs the package lists even when every system package is installed already
  echo "bootstrap: no apt package lists: apt-get update"
  $SUDO apt-get update -qq
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.ovbus-installed
want=$(cat pyproject.toml requirements.lock | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "bootstrap: installing pinned Python packages"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
  echo "$want" > "$stamp"
fi

# Node-RED, pinned by integrations/node-red/package-lock.json
if [ ! -d integrations/node-red/node_modules/node-red ]; then
  echo "bootstrap: installing Node-RED (npm ci)"
  (cd integrations/node-red && npm ci --no-audit --no-fund --loglevel=error)
fi
