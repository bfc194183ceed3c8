#!/usr/bin/env bash
# Runs one file's tests (a module of the e2e binary: tests/faults.rs is `faults`) N times in a
# row while two busy loops keep both cores loaded, as the project's rule for timing-dependent
# tests asks; prints the pass count.
#   scripts/stress-loop.sh faults 10
set -uo pipefail
cd "$(dirname "$0")/.."
test=${1:?a file of tests/ without .rs, e.g. faults}
runs=${2:-10}
cargo test --test e2e --no-run -q 2>/dev/null
yes >/dev/null & b1=$!
yes >/dev/null & b2=$!
trap 'kill $b1 $b2 2>/dev/null' EXIT
pass=0
for i in $(seq 1 "$runs"); do
  if out=$(cargo test -q --test e2e -- "$test::" 2>&1); then
    pass=$((pass + 1)); echo "run $i: ok ($(grep -o 'finished in [0-9.]*s' <<<"$out" | tail -1))"
  else
    echo "run $i: FAILED"; grep -E "panicked|left|right|assert" <<<"$out" | head -20
  fi
done
echo "$test: $pass of $runs passed with both cores busy"
