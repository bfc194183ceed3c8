#!/usr/bin/env bash
# The Helm chart, checked without a cluster (part of `make test`): helm lint, helm template
# with several value sets validated against the Kubernetes 1.33 schemas, and a simulated
# rollout of the StatefulSet's pods against the fake Fastly API (scripts/helm_check.py).
#
# Tools: helm (v3 or v4), Python with PyYAML and kubernetes-validate; scripts/fetch-tools.sh
# caches them under target/tools/. Without them this skips loudly, unless
# FASTLY_EXPORTER_REQUIRE_HELM=1 (set by .ci/run) makes that a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

helm=${HELM:-}
if [ -z "$helm" ]; then
  if [ -x "$TOOLS/bin/helm" ]; then helm=$TOOLS/bin/helm; else helm=$(command -v helm || true); fi
fi
[ -n "$helm" ] || skip_or_fail helm-check FASTLY_EXPORTER_REQUIRE_HELM "helm not found"
py=$(tools_python) || skip_or_fail helm-check FASTLY_EXPORTER_REQUIRE_HELM "no python3 with PyYAML"
echo "helm-check: $("$helm" version --short), $py"

ensure_release_bins
require=()
[ -n "${FASTLY_EXPORTER_REQUIRE_HELM:-}" ] && require+=(--require)
[ -n "${FASTLY_EXPORTER_REQUIRE_PROMETHEUS:-}" ] && require+=(--require-prometheus)
# The chart ships copies of the example alerts and dashboard (Helm reads files only from
# inside the chart); tests/examples.rs also checks they match.
for f in alerts.yml grafana-dashboard.json; do
  cmp -s "examples/$f" "deploy/helm/fastly-exporter/files/$f" \
    || { echo "helm-check: FAILED: deploy/helm/fastly-exporter/files/$f differs from examples/$f (copy it)" >&2; exit 1; }
done
exec "$py" scripts/helm_check.py --helm "$helm" --chart deploy/helm/fastly-exporter \
  --exporter "$EXPORTER_BIN" --fake "$FAKE_BIN" --prometheus-example examples/prometheus-sharded.yml "${require[@]}"
