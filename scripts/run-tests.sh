#!/usr/bin/env bash
# Runs the whole test suite: under cargo-nextest when it is installed (each test in its own
# process, several at once, the heavy ones one at a time: .config/nextest.toml), otherwise
# with cargo test (one test binary after another). Doc tests run separately, since nextest
# does not run them. FASTLY_EXPORTER_REQUIRE_NEXTEST=1 (set by .ci/run) makes a missing
# nextest a failure instead of the slow path.
set -euo pipefail
cd "$(dirname "$0")/.."
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
  cargo test --workspace --doc
elif [ -n "${FASTLY_EXPORTER_REQUIRE_NEXTEST:-}" ]; then
  echo "run-tests: FAILED: cargo-nextest not found (FASTLY_EXPORTER_REQUIRE_NEXTEST is set)" >&2
  exit 1
else
  echo "run-tests: cargo-nextest not found; running cargo test (slower: one test binary at a time)"
  cargo test --workspace --no-fail-fast
fi
