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
#
# --with-clippy (`make test`): `cargo clippy --all-targets -- -D warnings` runs while the tests
# run, not before the test build: the tests mostly wait on sockets, so the lints fill CPU the
# suite leaves idle instead of holding up the build the tests need. Its output is shown after
# the tests, and its failure fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
with_clippy=
[ "${1:-}" = --with-clippy ] && with_clippy=1
clippy_pid=
start_clippy() {
  if [ -n "$with_clippy" ]; then
    cargo clippy --all-targets --color never -- -D warnings >target/clippy.log 2>&1 &
    clippy_pid=$!
  fi
}
finish_clippy() {
  [ -n "$clippy_pid" ] || return 0
  local rc=0
  wait "$clippy_pid" || rc=$?
  cat target/clippy.log
  [ "$rc" = 0 ] || echo "run-tests: FAILED: cargo clippy --all-targets -- -D warnings (exit $rc)" >&2
  return "$rc"
}
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
  start_clippy
  wait_for_release
  rc=0
  cargo nextest run --no-fail-fast --binaries-metadata "$reuse/binaries.json" --cargo-metadata "$reuse/cargo.json" || rc=$?
  finish_clippy || rc=1
  [ "$rc" = 0 ] || exit "$rc"
  cargo test --workspace --doc
elif [ -n "${FASTLY_EXPORTER_REQUIRE_NEXTEST:-}" ]; then
  echo "run-tests: FAILED: cargo-nextest not found (FASTLY_EXPORTER_REQUIRE_NEXTEST is set)" >&2
  exit 1
else
  echo "run-tests: cargo-nextest not found; running cargo test (slower: one test binary at a time)"
  cargo test --workspace --no-run
  wait_for_release
  rc=0
  cargo test --workspace --no-fail-fast || rc=$?
  # Without nextest the lints run after the tests (one cargo at a time on target/debug).
  start_clippy
  finish_clippy || rc=1
  exit "$rc"
fi
