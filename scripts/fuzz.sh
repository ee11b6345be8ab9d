#!/usr/bin/env bash
# Builds the libFuzzer targets in fuzz/ with clang (ASan + UBSan) into
# build-fuzz/ and runs each for SECONDS (default 60), one after the other.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     targets: idx safetensors checkpoint image csv
#
# Each run starts from the committed seeds in fuzz/corpus/<target>/ and writes
# the inputs it finds interesting to build-fuzz/corpus/<target>/ (the committed
# corpus is never touched); crashing inputs land in build-fuzz/crashes/<target>/.
# Allocations above 512 MB or a resident size above 2 GB count as crashes: no
# small input may make the parsers allocate that much. Prints per target the
# executions, the coverage (cov: edges, ft: features) and the crashes found;
# exits non-zero if any target crashed. Extra libFuzzer flags: FUZZ_FLAGS.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=60
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then secs=$1; shift; fi
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(idx safetensors checkpoint image csv)

CC=${CC:-clang}
out=build-fuzz
san=("-fsanitize=address,undefined" "-fno-sanitize-recover=undefined")
cflags=(-std=c11 -g -O1 -fno-omit-frame-pointer "${san[@]}" -Wall -Wno-unknown-pragmas -D_DEFAULT_SOURCE
        -Iinclude -Isrc)
blas=/usr/lib/x86_64-linux-gnu/openblas-openmp
libs=("-L$blas" "-Wl,-rpath,$blas" -lopenblas -lcjson -lpng -lz -lm -lgomp) # omp_* queries of the ops
read -ra extra_flags <<<"${FUZZ_FLAGS:-}"

# The parts of the library the parsers and the model loader use, instrumented,
# as a static archive (the linker takes only what a target needs). OpenMP is
# left out: the parsers do not use it, and libFuzzer wants one thread. An
# object is rebuilt when its source or any header is newer.
mkdir -p "$out/obj"
objs=()
for src in src/{core,data,io,layers,nn,ops}/*.c; do
    obj=$out/obj/${src//\//_}.o
    if [[ ! -e $obj || $src -nt $obj || -n $(find include src -name '*.h' -newer "$obj") ]]; then
        echo "cc $src"
        "$CC" "${cflags[@]}" -fsanitize=fuzzer-no-link -c "$src" -o "$obj"
    fi
    objs+=("$obj")
done
rm -f "$out/libnn.a"
ar rcs "$out/libnn.a" "${objs[@]}"

status=0
summary=()
marker=$(mktemp)
trap 'rm -f "$marker"' EXIT
for t in "${targets[@]}"; do
    [[ -e fuzz/fuzz_$t.c ]] || { echo "fuzz.sh: no target '$t' (fuzz/fuzz_$t.c)" >&2; exit 2; }
    "$CC" "${cflags[@]}" -fsanitize=fuzzer "fuzz/fuzz_$t.c" "$out/libnn.a" "${libs[@]}" -o "$out/fuzz_$t"
    mkdir -p "$out/corpus/$t" "$out/crashes/$t"
    dict=()
    [[ -e fuzz/$t.dict ]] && dict=(-dict="fuzz/$t.dict")
    log=$out/fuzz_$t.log
    echo "== $t: fuzzing for ${secs}s (log: $log)"
    # One process, one thread: the machine is shared.
    rc=0
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        "$out/fuzz_$t" -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=2048 \
        -malloc_limit_mb=512 -timeout=10 -artifact_prefix="$out/crashes/$t/" "${dict[@]}" \
        "${extra_flags[@]}" "$out/corpus/$t" "fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1)
    crashes=$(find "$out/crashes/$t" -type f -newer "$marker" | wc -l) # this run's only
    line=$(printf '%-12s executions %-10s %-22s crashes %s' "$t" "${execs:-?}" "${cov:-cov: ? ft: ?}" "$crashes")
    summary+=("$line")
    if [[ $rc -ne 0 || $crashes -gt 0 ]]; then
        status=1
        grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error|artifact_prefix|Test unit written)' "$log" | head -n 8 || true
    fi
done
echo "== summary (${secs}s per target)"
printf '%s\n' "${summary[@]}"
exit $status
