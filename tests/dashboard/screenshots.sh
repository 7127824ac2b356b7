#!/usr/bin/env bash
# Refreshes the screenshots docs/dashboard.md shows: runs the triage browser
# test (which takes them) and copies each one the page names into
# docs/screenshots/. Needs what the test needs (chromium, node,
# npm ci --prefix tests/dashboard).
set -euo pipefail
cd "$(dirname "$0")/../.."
AIAUDIT_REFRESH_SCREENSHOTS=1 CI=1 cargo test -p aiaudit --test e2e dashboard_triage_in_chromium
mkdir -p docs/screenshots
for name in $(grep -o '](screenshots/[^)]*)' docs/dashboard.md | sed 's/^](screenshots\///; s/)$//' | sort -u); do
  cp "target/triage-screenshots/$name" "docs/screenshots/$name"
  echo "docs/screenshots/$name"
done
