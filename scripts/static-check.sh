#!/usr/bin/env bash
# Builds the fully static musl binary for TARGET (default x86_64-unknown-linux-musl; also
# aarch64-unknown-linux-musl), installing the Rust target when missing, and proves it:
#   - it is statically linked and at most 5 MB (MAX_BYTES);
#   - x86_64: the container image's filesystem (packaging/Dockerfile: binary + CA bundle, run
#     as its numeric USER from an otherwise empty root) serves /metrics against the bundled
#     fake (scripts/container_check.py);
#   - aarch64: under qemu-aarch64-static (called directly, no binfmt), -version and one
#     /metrics scrape against the fake running natively.
# --build-only stops after the build. A missing cross toolchain or qemu skips loudly, unless
# FASTLY_EXPORTER_REQUIRE_STATIC=1 (set by .ci/run) makes that a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
target=${TARGET:-x86_64-unknown-linux-musl}
bin=target/$target/release/fastly-exporter
MAX_BYTES=${MAX_BYTES:-5000000}
name="static-check[$target]"

if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  rustup target add "$target" || skip_or_fail "$name" FASTLY_EXPORTER_REQUIRE_STATIC "cannot install the $target Rust target (offline?)"
fi
case "$target" in
  x86_64-unknown-linux-musl)
    if ! command -v musl-gcc >/dev/null && [ "$(id -u)" = 0 ]; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq musl-tools >/dev/null 2>&1 || true
    fi
    # ring (TLS) compiles C; musl-gcc when available, else the system gcc works for x86_64.
    export CC_x86_64_unknown_linux_musl="$(command -v musl-gcc || command -v gcc)"
    ;;
  aarch64-unknown-linux-musl)
    # ring's C and assembly need a cross compiler; it also links (the Rust target brings its
    # own musl CRT and libc, so the result is static). Debian: gcc-aarch64-linux-gnu.
    command -v aarch64-linux-gnu-gcc >/dev/null \
      || skip_or_fail "$name" FASTLY_EXPORTER_REQUIRE_STATIC "aarch64-linux-gnu-gcc not found (apt-get install gcc-aarch64-linux-gnu)"
    export CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc
    ;;
  *) echo "$name: unsupported TARGET (x86_64-unknown-linux-musl or aarch64-unknown-linux-musl)" >&2; exit 2 ;;
esac
cargo build --release --target "$target" --bin fastly-exporter
[ "${1:-}" = "--build-only" ] && exit 0

echo "== static binary ($target)"
ls -l "$bin"
file "$bin"
file "$bin" | grep -Eq 'static(-pie)? linked|statically linked' || { echo "$name: FAILED: not statically linked" >&2; exit 1; }
size=$(stat -c %s "$bin")
[ "$size" -le "$MAX_BYTES" ] || { echo "$name: FAILED: $size bytes, more than $MAX_BYTES" >&2; exit 1; }
echo "$name: $size bytes (limit $MAX_BYTES)"
ensure_release_bins

require=()
[ -n "${FASTLY_EXPORTER_REQUIRE_STATIC:-}" ] && require=(--require)
case "$target" in
  x86_64-unknown-linux-musl)
    exec python3 scripts/container_check.py --dockerfile packaging/Dockerfile --target "$target" --fake "$FAKE_BIN" "${require[@]}"
    ;;
esac

# aarch64 under user-mode emulation.
qemu=$(command -v qemu-aarch64-static || true)
[ -n "$qemu" ] || skip_or_fail "$name" FASTLY_EXPORTER_REQUIRE_STATIC "qemu-aarch64-static not found (apt-get install qemu-user-static)"
file "$bin" | grep -q 'ARM aarch64' || { echo "$name: FAILED: not an aarch64 binary" >&2; exit 1; }
"$qemu" "$bin" -version
fake=; exporter=
trap 'kill $fake $exporter 2>/dev/null || true' EXIT
api_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$FAKE_BIN" -listen "127.0.0.1:$api_port" -services 2 -token demo >/dev/null 2>&1 &
fake=$!
"$qemu" "$bin" -token demo -api-endpoint "http://127.0.0.1:$api_port" -rt-endpoint "http://127.0.0.1:$api_port" \
  -listen "127.0.0.1:$port" 2>/dev/null &
exporter=$!
python3 - "$port" "$name" <<'PY'
import sys, time, urllib.request
port, name = sys.argv[1], sys.argv[2]
deadline = time.time() + 60  # emulated: slower start
while True:
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        if "fastly_rt_requests_total{" in body:
            print(f"{name}: OK: under qemu-aarch64-static, /metrics served {body.count(chr(10))} lines")
            break
    except OSError:
        pass
    if time.time() > deadline:
        sys.exit(f"{name}: FAILED: no real-time series from the aarch64 binary within 60 s")
    time.sleep(0.5)
PY
