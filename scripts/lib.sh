# Shared by the check scripts (source it): where the release binaries and the cached tools
# live, and how a missing tool is reported.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Downloaded tools (helm, kubectl, a Python venv with kubernetes-validate): scripts/fetch-tools.sh.
TOOLS=$REPO/target/tools
STATIC_DIR=$REPO/target/x86_64-unknown-linux-musl/release

# newest PATH...: the newest of the executables given (nothing when none exists).
newest() {
  local best= p
  for p in "$@"; do
    if [ -x "$p" ] && { [ -z "$best" ] || [ "$p" -nt "$best" ]; }; then best=$p; fi
  done
  echo "$best"
}
# The exporter: the newer of the static x86_64 build (what ships; `make test` builds no other)
# and `cargo build --release`'s. The fake: the newer of `cargo build --release`'s and the test
# build's (fake-fastly/tests/cli.rs makes cargo build it; fast enough for the checks).
pick_release_bins() {
  EXPORTER_BIN=$(newest "$STATIC_DIR/fastly-exporter" "$REPO/target/release/fastly-exporter")
  FAKE_BIN=$(newest "$REPO/target/release/fake-fastly" "$REPO/target/debug/fake-fastly")
}

# Sets EXPORTER_BIN and FAKE_BIN, building the release exporter and fake when either is
# missing (`make test` builds them first). Picked when called, not when this file is sourced:
# the static build may end in between.
ensure_release_bins() {
  pick_release_bins
  if [ -z "$EXPORTER_BIN" ] || [ -z "$FAKE_BIN" ]; then
    (cd "$REPO" && cargo build --release --bins)
    pick_release_bins
  fi
}

# skip_or_fail NAME REQUIRE_VAR REASON: a missing tool fails when REQUIRE_VAR is set (CI sets
# it), and otherwise skips loudly with exit 0 so a developer without the tool can still run
# `make test`.
skip_or_fail() {
  local name=$1 require=$2 reason=$3
  if [ -n "${!require:-}" ]; then
    echo "$name: FAILED: $reason ($require is set)" >&2
    exit 1
  fi
  echo "$name: SKIPPED: $reason (scripts/fetch-tools.sh installs it; $require=1 makes this fatal)"
  exit 0
}

# The Python that has kubernetes-validate and PyYAML: the tools venv first, then python3.
tools_python() {
  local py
  for py in "$TOOLS/py/bin/python" python3; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import yaml' 2>/dev/null; then
      echo "$py"
      return 0
    fi
  done
  return 1
}
