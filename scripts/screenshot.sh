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

# The page has no script, so no virtual time budget is needed. Headless
# Chromium has no full-page option, so the whole page is taken in a tall
# window and the blank space below the page is cut off afterwards.
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
height=${FULL_HEIGHT:-30000}
shoot desktop-1280-full "1280,$height" >/dev/null
shoot laptop-1024-full "1024,$height" >/dev/null
python3 - "$output" <<'PYTHON'
import sys
from pathlib import Path

import numpy as np
from PIL import Image  # pillow comes with matplotlib

for path in sorted(Path(sys.argv[1]).glob("*-full.png")):
    image = Image.open(path)
    dark = np.flatnonzero(np.asarray(image.convert("L")).min(axis=1) < 250)
    if len(dark) and dark[-1] + 40 < image.height:
        image.crop((0, 0, image.width, dark[-1] + 40)).save(path)
    print(path)
PYTHON
