#!/usr/bin/env bash
# Runs the whole test suite: under cargo-nextest when it is installed (each test in its own
# process, several at once, the heavy ones one at a time: .config/nextest.toml), otherwise
# with cargo test (one test binary after another). Doc tests run separately, since nextest
# does not run them. FASTLY_EXPORTER_REQUIRE_NEXTEST=1 (set by .ci/run) makes a missing
# nextest a failure instead of the slow path.
#
# RELEASE_BUILT (a path, set by `make test`): the release binaries the end-to-end tests run
# are being built beside this script; the tests start once that file exists (the test
# binaries are built meanwhile). Without it, missing release binaries are built here.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
wait_for_release() {
  if [ -n "${RELEASE_BUILT:-}" ]; then
    until [ -e "$RELEASE_BUILT" ]; do sleep 1; done
  fi
  ensure_release_bins
}
if cargo nextest --version >/dev/null 2>&1; then
  # Built first, then run from that build (no cargo call while the release build may run).
  reuse=target/nextest-reuse
  mkdir -p "$reuse"
  cargo nextest list --workspace --list-type binaries-only --message-format json >"$reuse/binaries.json"
  cargo metadata --format-version 1 >"$reuse/cargo.json"
  wait_for_release
  cargo nextest run --no-fail-fast --binaries-metadata "$reuse/binaries.json" --cargo-metadata "$reuse/cargo.json"
  cargo test --workspace --doc
elif [ -n "${FASTLY_EXPORTER_REQUIRE_NEXTEST:-}" ]; then
  echo "run-tests: FAILED: cargo-nextest not found (FASTLY_EXPORTER_REQUIRE_NEXTEST is set)" >&2
  exit 1
else
  echo "run-tests: cargo-nextest not found; running cargo test (slower: one test binary at a time)"
  cargo test --workspace --no-run
  wait_for_release
  cargo test --workspace --no-fail-fast
fi
