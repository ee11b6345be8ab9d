#!/usr/bin/env bash
# make bench: nn's training benchmark and, when Debian's python3-torch is
# installed, PyTorch's on the same configurations in the same run; then one
# side-by-side table. EPOCHS (default 3) timed epochs per configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${EPOCHS:-3}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo "bench: nn, $epochs timed epochs per configuration (plus one warm-up)..." >&2
build/bench/bench_train "$epochs" | tee -a "$out"
if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  echo "bench: PyTorch, same configurations..." >&2
  /usr/bin/python3 bench/torch_bench.py "$epochs" | tee -a "$out"
else
  echo "bench: python3-torch is not installed; PyTorch side skipped" >&2
fi
python3 bench/report.py "$out"
