#!/usr/bin/env bash
# Regenerates the console screenshots the README shows (docs/console-*.png) in headless
# Chromium, from a server with demo runs (flow-server/tests/console_browser.rs,
# `console_screenshots`). Installs chromium with scripts/install-chromium.sh if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
CI=true cargo test -p flow-server --test console_browser -- --ignored --exact console_screenshots --nocapture
ls -l docs/console-*.png
