#!/usr/bin/env bash
# Runs the whole test suite: under cargo-nextest when it is installed (each test in its own
# process, several at once, the heavy ones one at a time: .config/nextest.toml), otherwise
# with cargo test (one test binary after another). Doc tests run separately, since nextest
# does not run them. FASTLY_EXPORTER_REQUIRE_NEXTEST=1 (set by .ci/run) makes a missing
# nextest a failure instead of the slow path.
#
# Under nextest the test binaries are built first, then run from that build without cargo
# (--binaries-metadata): while they run, cargo's build lock is free, so `make test` builds
# the static binaries meanwhile. TESTS_BUILT (a path) is created once the build step ended,
# whatever its outcome, so whoever waits for it never waits forever.
set -euo pipefail
cd "$(dirname "$0")/.."
built() { if [ -n "${TESTS_BUILT:-}" ]; then touch "$TESTS_BUILT"; fi; }
if cargo nextest --version >/dev/null 2>&1; then
  reuse=target/nextest-reuse
  mkdir -p "$reuse"
  trap built EXIT
  cargo nextest list --workspace --list-type binaries-only --message-format json >"$reuse/binaries.json"
  cargo metadata --format-version 1 >"$reuse/cargo.json"
  built
  trap - EXIT
  cargo nextest run --no-fail-fast --binaries-metadata "$reuse/binaries.json" --cargo-metadata "$reuse/cargo.json"
  cargo test --workspace --doc
elif [ -n "${FASTLY_EXPORTER_REQUIRE_NEXTEST:-}" ]; then
  built
  echo "run-tests: FAILED: cargo-nextest not found (FASTLY_EXPORTER_REQUIRE_NEXTEST is set)" >&2
  exit 1
else
  built
  echo "run-tests: cargo-nextest not found; running cargo test (slower: one test binary at a time)"
  cargo test --workspace --no-fail-fast
fi
