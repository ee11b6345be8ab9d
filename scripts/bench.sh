#!/usr/bin/env bash
# make bench: nn's training benchmarks and, when Debian's python3-torch is
# installed, PyTorch's on the same configurations in the same run, PyTorch at
# each of its settings (bench/torch_bench.py); then the tables of
# docs/PERFORMANCE.md (bench/report.py). EPOCHS (default 3) timed epochs per
# MLP configuration and round, ROUNDS (default 2) rounds; BUILD (default
# build) is where the benchmark binaries are. BENCH (default "mlp cnn text
# gpt") picks the groups of rows: BENCH=text runs only the recurrent
# models', BENCH=gpt only the GPT's (training and generation).
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${EPOCHS:-3}
rounds=${ROUNDS:-2}
build=${BUILD:-build}
groups=" ${BENCH:-mlp cnn text gpt} "
for group in $groups; do
  case $group in
  mlp | cnn | text | gpt) ;;
  *) echo "bench: BENCH: unknown group '$group' (mlp, cnn, text, gpt)" >&2; exit 2 ;;
  esac
done
wants() { [[ $groups == *" $1 "* ]]; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT
have_torch=0
/usr/bin/python3 -c 'import torch' 2>/dev/null && have_torch=1
[ $have_torch = 1 ] || echo "bench: python3-torch is not installed; PyTorch side skipped" >&2

# One MLP configuration: nn in fp32 and in bf16 (bench_train skips bf16,
# with a line, where the CPU lacks AVX512_BF16), then PyTorch at every
# setting, starting at a different one each round. nn runs the OpenBLAS
# kernels OpenBLAS picks for the CPU, whatever OPENBLAS_CORETYPE says (an
# environment that forces older kernels would handicap nn's fp32 side);
# PyTorch runs both ways.
mlp_turn() {
  local config=$1
  echo "bench: round $round/$rounds, $config: nn fp32 and bf16, $epochs timed epochs (plus one warm-up)..." >&2
  env -u OPENBLAS_CORETYPE "$build/bench/bench_train" "$epochs" "$config" "$config-bf16" | tee -a "$out"
  if [ $have_torch = 1 ]; then
    echo "bench: round $round/$rounds, $config: PyTorch at each of its settings..." >&2
    /usr/bin/python3 bench/torch_bench.py --rotate $((round - 1)) "$epochs" "$config" | tee -a "$out"
  fi
}

# nn and PyTorch take turns, configuration by configuration, for ROUNDS
# rounds: this machine's speed drifts with its neighbours' load, and turns
# spread the drift over both sides instead of one. The report takes medians
# and compares each round with itself.
for round in $(seq "$rounds"); do
  wants mlp || break
  echo "bench.round $round" | tee -a "$out" # in the printed record too, so that report.py can re-read it
  for config in basic advanced; do
    mlp_turn "$config"
  done
done
# The CNNs (bench/bench_conv.c, bench/torch_cnn.py): CNN_EPOCHS (default 2)
# timed runs of CNN_STEPS (default 200) steps each, after a warm-up, per
# configuration and round; nn (OpenBLAS's own kernels, as above) and PyTorch
# (every setting) take turns.
cnn_steps=${CNN_STEPS:-200}
cnn_epochs=${CNN_EPOCHS:-2}
for round in $(seq "$rounds"); do
  wants cnn || break
  echo "bench.round $round" | tee -a "$out" # in the printed record too, so that report.py can re-read it
  for config in keras examples; do
    echo "bench: round $round/$rounds, $config CNN: nn, $cnn_epochs x $cnn_steps steps (plus a warm-up)..." >&2
    env -u OPENBLAS_CORETYPE "$build/bench/bench_conv" "$cnn_steps" "$cnn_epochs" "$config" | tee -a "$out"
    if [ $have_torch = 1 ]; then
      echo "bench: round $round/$rounds, $config CNN: PyTorch at each of its settings..." >&2
      /usr/bin/python3 bench/torch_cnn.py --steps "$cnn_steps" --runs "$cnn_epochs" --rotate $((round - 1)) "$config" |
        tee -a "$out"
    fi
  done
done
# The text models (bench/bench_text.c, bench/torch_text.py): the
# char-LSTM's training tokens/s (TEXT_STEPS steps per run, default 100), the
# names GRU's training names/s (NAMES_STEPS, default 300) and generation's
# characters/s at batch 1 (GEN_CHARS, default 2000); the GPT's (group gpt)
# training tokens/s (TEXT_STEPS) and generation (GEN_CHARS); TEXT_RUNS (default 2)
# timed runs per turn after a warm-up; nn and PyTorch (every setting) take
# turns, configuration by configuration, for ROUNDS rounds; nn at each of its
# settings too (every core and one thread; bench_text). Both sides run
# with OpenBLAS's own kernels and cache sizes: OPENBLAS_CORETYPE and
# OPENBLAS_L2_SIZE, which an environment may set, are removed.
lm_steps=${TEXT_STEPS:-100}
names_steps=${NAMES_STEPS:-300}
gen_chars=${GEN_CHARS:-2000}
text_runs=${TEXT_RUNS:-2}
text_configs=
wants text && text_configs="charlstm namesgru generate"
wants gpt && text_configs="$text_configs gpt gptgen"
if wants text || wants gpt; then
  scripts/fetch_data.sh tinyshakespeare
fi
if wants text; then
  scripts/fetch_data.sh names-by-language
fi
for round in $(seq "$rounds"); do
  [ -n "$text_configs" ] || break
  echo "bench.round $round" | tee -a "$out" # in the printed record too, so that report.py can re-read it
  peak=peak # this machine's sgemm peak once a round, for the models' share of it
  for config in $text_configs; do
    echo "bench: round $round/$rounds, $config: nn..." >&2
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$build/bench/bench_text" --lm-steps "$lm_steps" \
      --names-steps "$names_steps" --gen-chars "$gen_chars" --runs "$text_runs" $peak "$config" | tee -a "$out"
    peak=
    if [ $have_torch = 1 ]; then
      echo "bench: round $round/$rounds, $config: PyTorch at each of its settings..." >&2
      env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 bench/torch_text.py --steps "$lm_steps" \
        --names-steps "$names_steps" --gen-chars "$gen_chars" --runs "$text_runs" --rotate $((round - 1)) "$config" |
        tee -a "$out"
    fi
  done
done
/usr/bin/python3 bench/report.py "$out"
