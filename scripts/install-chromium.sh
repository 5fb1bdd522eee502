#!/usr/bin/env bash
# Installs Debian's Chromium and its WebDriver (chromedriver) for the console's browser
# tests (flow-server/tests/console_browser.rs), when they are missing.
#
# Needs root (or passwordless sudo) and Debian's package archive. Exits 0 when both
# /usr/bin/chromium and /usr/bin/chromedriver are there afterwards, non-zero otherwise.
set -euo pipefail

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    echo "install-chromium: chromium and chromedriver are missing, and installing them needs root" \
        "(run: apt-get install -y chromium chromium-driver)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q >&2
"${SUDO[@]}" apt-get install -y -q --no-install-recommends chromium chromium-driver >&2

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    echo "install-chromium: installed $(/usr/bin/chromium --version 2>/dev/null || echo chromium)" >&2
    exit 0
fi
echo "install-chromium: apt-get finished but /usr/bin/chromium or /usr/bin/chromedriver is still missing" >&2
exit 1
