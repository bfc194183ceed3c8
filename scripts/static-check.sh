#!/usr/bin/env bash
# Builds the fully static x86_64-unknown-linux-musl binary (installing the Rust target and
# musl-tools when missing) and proves it needs no libc: it runs from an empty root directory
# (chroot, or an unprivileged user namespace) and serves /metrics against the bundled fake.
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-musl
bin=target/$target/release/fastly-exporter

skip() { echo "static-check: SKIPPED: $*"; exit 0; }

if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  rustup target add "$target" || skip "cannot install the $target Rust target (offline?)"
fi
if ! command -v musl-gcc >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq musl-tools >/dev/null 2>&1 || true
  fi
fi
# ring (TLS) compiles C; musl-gcc when available, else the system gcc works for x86_64.
export CC_x86_64_unknown_linux_musl="$(command -v musl-gcc || command -v gcc)"
cargo build --release --target "$target" --bin fastly-exporter
[ "${1:-}" = "--build-only" ] && exit 0

echo "== static binary"
ls -l "$bin"
file "$bin"
ldd "$bin" 2>&1 || true
file "$bin" | grep -Eq 'static(-pie)? linked' || { echo "static-check: FAILED: not statically linked"; exit 1; }

[ -x target/release/fake-fastly ] || cargo build --release --bin fake-fastly
root=$(mktemp -d)
trap 'kill $fake $exporter 2>/dev/null || true; rm -rf "$root"' EXIT
cp "$bin" "$root/fastly-exporter"
api_port=$((20000 + RANDOM % 20000)); port=$((api_port + 1))
target/release/fake-fastly -listen "127.0.0.1:$api_port" -services 2 -token demo >/dev/null 2>&1 &
fake=$!
args=(/fastly-exporter -token demo -api-endpoint "http://127.0.0.1:$api_port" -rt-endpoint "http://127.0.0.1:$api_port" -listen "127.0.0.1:$port")
if [ "$(id -u)" = 0 ] && command -v chroot >/dev/null; then
  chroot "$root" "${args[@]}" 2>"$root.log" &
elif unshare -r -R "$root" /fastly-exporter -version >/dev/null 2>&1; then
  unshare -r -R "$root" "${args[@]}" 2>"$root.log" &
else
  skip "neither chroot (root) nor unprivileged user namespaces are available"
fi
exporter=$!
python3 - "$port" <<'PY'
import sys, time, urllib.request
port = sys.argv[1]
deadline = time.time() + 30
while True:
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        if "fastly_rt_requests_total{" in body:
            print(f"static-check: OK: the static binary, alone in an empty root, served {body.count(chr(10))} lines")
            break
    except OSError:
        pass
    if time.time() > deadline:
        sys.exit("static-check: FAILED: no real-time series from the static binary within 30 s")
    time.sleep(0.5)
PY
