#!/usr/bin/env bash
# make bench: nn's training benchmark and, when Debian's python3-torch is
# installed, PyTorch's on the same configurations in the same run; then one
# side-by-side table. EPOCHS (default 3) timed epochs per configuration and
# round, ROUNDS (default 2) rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${EPOCHS:-3}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
rounds=${ROUNDS:-2}
have_torch=0
/usr/bin/python3 -c 'import torch' 2>/dev/null && have_torch=1
[ $have_torch = 1 ] || echo "bench: python3-torch is not installed; PyTorch side skipped" >&2
# nn and PyTorch take turns, configuration by configuration, for ROUNDS
# rounds: this machine's speed drifts with its neighbours' load, and turns
# spread the drift over both sides instead of one. The report takes medians.
for round in $(seq "$rounds"); do
  for config in basic advanced; do
    echo "bench: round $round/$rounds, $config: nn, $epochs timed epochs (plus one warm-up)..." >&2
    build/bench/bench_train "$epochs" "$config" | tee -a "$out"
    if [ $have_torch = 1 ]; then
      echo "bench: round $round/$rounds, $config: PyTorch..." >&2
      /usr/bin/python3 bench/torch_bench.py "$epochs" "$config" | tee -a "$out"
    fi
  done
done
python3 bench/report.py "$out"
