#!/usr/bin/env bash
# Starts the bundled fake Fastly API and the exporter against it; Ctrl-C stops both.
set -euo pipefail
api=${1:-127.0.0.1:8081}
listen=${2:-127.0.0.1:8080}
services=${3:-5}
cd "$(dirname "$0")/.."
bin=target/release
"$bin/fake-fastly" -listen "$api" -services "$services" -token demo >/dev/null &
fake=$!
trap 'kill $fake 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 50); do
  if (exec 3<>"/dev/tcp/${api%:*}/${api#*:}") 2>/dev/null; then break; fi
  sleep 0.1
done
echo "fake Fastly API on http://$api ($services services)"
echo "exporter on http://$listen/ : open http://$listen/metrics (Ctrl-C to stop)"
"$bin/fastly-exporter" -token demo -api-endpoint "http://$api" -rt-endpoint "http://$api" -listen "$listen"
