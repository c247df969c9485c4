#!/usr/bin/env bash
# Screenshot a report in headless Chromium at desktop and laptop widths.
#
# Usage: scripts/screenshot.sh [REPORT.html] [OUTPUT_FOLDER]
# Defaults: results/report.html and results/screenshots. Writes, per width, the
# first screen (what a reader sees on opening) and the whole page.
set -euo pipefail

report=$(realpath "${1:-results/report.html}")
output=${2:-results/screenshots}
browser=$(command -v chromium || command -v chromium-browser || true)
if [[ -z "$browser" ]]; then
    echo "screenshot.sh: chromium not found; install it with" \
        "apt-get install -y --no-install-recommends chromium" >&2
    exit 2
fi
if [[ ! -f "$report" ]]; then
    echo "screenshot.sh: report $report not found; run softgrad run or report first" >&2
    exit 2
fi
mkdir -p "$output"
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT

# The page has no script, so no virtual time budget is needed. The full-page
# height is a generous fixed size: headless Chromium has no full-page option.
shoot() {
    local name=$1 size=$2
    "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --disable-dev-shm-usage --hide-scrollbars --user-data-dir="$profile" \
        --window-size="$size" --screenshot="$output/$name.png" "file://$report" \
        2>/dev/null
    echo "$output/$name.png"
}
shoot desktop-1280x900 1280,900
shoot laptop-1024x768 1024,768
shoot laptop-1366x768 1366,768
shoot desktop-1280-full 1280,"${FULL_HEIGHT:-12000}"
shoot laptop-1024-full 1024,"${FULL_HEIGHT:-12000}"
