#!/usr/bin/env bash
# Check and time the GPU backends on a machine with an NVIDIA GPU, in one command:
# the GPU value tests, the GPU probe, a sweep at the three GPU sizes, and the
# closing figures. Writes everything into the folder given (default results/gpu).
#
#   bash scripts/gpu_check.sh [RESULTS_FOLDER]
#
# PYTHON selects the interpreter (default python3). Where softgrad is not
# installed, the checkout itself is put on PYTHONPATH, so a machine without
# network access only needs the packages of pyproject.toml already installed.
set -uo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
out=${1:-results/gpu}
sizes=4096x1000,256x50257,64x128256
dtypes=float64,float32,float16,bfloat16
mkdir -p "$out"

if ! "$python" -c "import softgrad" 2>/dev/null; then
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1

echo "== backends"
"$python" -m softgrad list | tee "$out/backends.txt"

echo "== GPU value tests"
"$python" -m pytest -q -p no:cacheprovider -rs tests/test_gpu.py tests/test_gpu_probe.py \
    2>&1 | tee "$out/gpu-tests.log"
tests_status=${PIPESTATUS[0]}

echo "== GPU probe"
"$python" -m softgrad.gpu_probe | tee "$out/probe.json"

echo "== sweep at $sizes"
"$python" -m softgrad run --sizes "$sizes" --dtypes "$dtypes" --results "$out"
run_status=$?

# The run writes one raw file per invocation; the newest is this one.
raw=$(ls -t "$out"/raw/run-*.json 2>/dev/null | head -n 1)
if [ -z "$raw" ]; then
    echo "gpu_check: no raw results in $out/raw; see $out/pytest.log" >&2
    exit 1
fi

echo "== closing figures from $raw"
"$python" -m softgrad.gpu_figures "$raw" --probe "$out/probe.json" | tee "$out/figures.md"
figures_status=${PIPESTATUS[0]}

echo "== exit statuses: tests $tests_status, run $run_status, figures $figures_status"
[ "$tests_status" -eq 0 ] && [ "$run_status" -eq 0 ] && [ "$figures_status" -eq 0 ]
