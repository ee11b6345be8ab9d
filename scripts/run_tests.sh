#!/usr/bin/env bash
# Runs each test binary given, from the repository root, and sums their
# "N passed, N failed, N skipped" lines into one closing line; every skipped
# test is listed with its reason. Exit status is non-zero if any test failed
# or any binary crashed.
#
# NN_OFFLINE=1 (make check): the tests run in a scratch folder that links
# everything in the repository root but data/ and build-node/, so every test
# that needs MNIST, or the npm packages for node and the browser, skips (and is
# listed as skipped, never counted as passed); the tests that run PyTorch need
# MNIST first. NN_OFFLINE stays set for the tests to see.
set -u
cd "$(dirname "$0")/.."
if [ "${NN_OFFLINE:-0}" = 1 ]; then
  root=$(pwd -P)
  view=$(mktemp -d "${TMPDIR:-/tmp}/nn-offline.XXXXXX") || exit 1
  trap 'rm -rf "$view"' EXIT # links only (rm -rf does not follow them)
  for entry in "$root"/* "$root"/.[!.]*; do
    case ${entry##*/} in data | build-node) continue ;; esac
    [ -e "$entry" ] && ln -s "$entry" "$view/${entry##*/}"
  done
  cd "$view" || exit 1
  export NN_OFFLINE
  echo "offline: data/ and build-node/ hidden; what needs them skips"
fi
passed=0 failed=0 skipped=0 crashed=0
for t in "$@"; do
  name=$(basename "$t")
  out=$("$t" 2>&1); rc=$?
  line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -n 1)
  printf '%s\n' "$out" | grep -E '^skip ' | sed "s/^/  $name: /"
  if [ -z "$line" ] || [ $rc -ne 0 ]; then
    printf '%s\n' "$out" | grep -vE '^ok ' | tail -n 40
  fi
  if [ -z "$line" ]; then
    echo "FAIL $name: exited $rc without a summary line"
    crashed=$((crashed + 1))
    continue
  fi
  p=${line%% passed*}; f=${line#*passed, }; f=${f%% failed*}
  s=0; case $line in *skipped*) s=${line#*failed, }; s=${s%% skipped*};; esac
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
  printf '%-28s %s\n' "$name" "$line"
  [ $rc -ne 0 ] && [ "$f" -eq 0 ] && { echo "FAIL $name: exit status $rc"; crashed=$((crashed + 1)); }
done
failed=$((failed + crashed))
echo "$passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ]
