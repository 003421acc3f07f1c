#!/usr/bin/env bash
# Install what the dashboard's browser test needs, idempotently: Debian's chromium (no browser
# download: the network may be closed to everything but the package registries) and
# playwright-core from npm in tests/browser/ (it drives that chromium over CDP).
# Usage: bash scripts/browser-setup.sh        (root, or sudo available; safe to run again)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
browser_dir="$here/tests/browser"

sudo_if_needed() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

find_chromium() {
  command -v chromium || command -v chromium-browser || true
}

if [ -z "$(find_chromium)" ]; then
  export DEBIAN_FRONTEND=noninteractive
  # apt-get update only when the package lists do not know chromium yet
  if ! apt-cache policy chromium 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    sudo_if_needed apt-get update -q
  fi
  sudo_if_needed apt-get install -y -q chromium
fi
chromium_bin="$(find_chromium)"
if [ -z "$chromium_bin" ]; then
  echo "browser-setup: chromium is still missing after apt-get install" >&2
  exit 1
fi
echo "browser-setup: $("$chromium_bin" --version 2>/dev/null || echo "$chromium_bin")"

if ! command -v npm > /dev/null; then
  echo "browser-setup: npm is missing (apt-get install -y nodejs npm)" >&2
  exit 1
fi
# npm ci when the lock file pins the exact tree; reinstall only when package files changed
stamp="$browser_dir/node_modules/.streamer-installed"
if [ ! -f "$stamp" ] || [ "$browser_dir/package.json" -nt "$stamp" ] \
  || { [ -f "$browser_dir/package-lock.json" ] && [ "$browser_dir/package-lock.json" -nt "$stamp" ]; }; then
  if [ -f "$browser_dir/package-lock.json" ]; then
    npm ci --prefix "$browser_dir" --no-audit --no-fund --loglevel=error
  else
    npm install --prefix "$browser_dir" --no-audit --no-fund --loglevel=error
  fi
  touch "$stamp"
fi
echo "browser-setup: playwright-core $(node -p "require('$browser_dir/node_modules/playwright-core/package.json').version")"
