#!/usr/bin/env bash
# Installs the npm packages the tests drive (onnxruntime-node for the ONNX
# export test, ...) into build-node/node_modules. Idempotent: does nothing
# when every package is already there at the wanted version.
# --ignore-scripts: install scripts reach for downloads that are not reachable
# (onnxruntime-node's CPU runtime ships inside the package itself).
#
#   scripts/node_deps.sh                 the default list below
#   scripts/node_deps.sh NAME[@VERSION]... those as well
#
# npm removes packages it was not asked for in the same call, so every call
# installs the default list together with the ones given.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=build-node
defaults=(
  onnxruntime-node@1.30.0   # runs nn export's ONNX files (tests/test_onnx.c)
  playwright-core@1.65.1    # drives Debian's chromium for nn serve's page (tests/test_serve.c)
)
command -v npm >/dev/null || { echo "node_deps: npm is missing (apt-get install -y npm)" >&2; exit 1; }
all=("${defaults[@]}" "$@")
missing=0
for spec in "${all[@]}"; do
  name=${spec%@*} version=${spec##*@}
  if [ -z "$name" ] || [ "$spec" = "$name" ]; then name=$spec version=""; fi # no version, or @scope/name
  json=$prefix/node_modules/$name/package.json
  if ! [ -f "$json" ] || { [ -n "$version" ] && ! grep -q "\"version\": *\"$version\"" "$json"; }; then
    missing=1
  fi
done
if [ $missing = 0 ]; then
  echo "node_deps: all present in $prefix/node_modules" >&2
  exit 0
fi
mkdir -p "$prefix"
echo "node_deps: installing ${all[*]} into $prefix/node_modules" >&2
npm install --ignore-scripts --no-save --no-audit --no-fund --prefix "$prefix" "${all[@]}"
