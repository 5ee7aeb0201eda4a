#!/usr/bin/env bash
# Validates the manifests against the Kubernetes schemas (kubernetes-validate, offline,
# strict: unknown fields fail) and checks the config and policy embedded in the
# ConfigMap with `cognito-gate check`. It does not run a cluster.
# Use: deploy/kubernetes/validate.sh [path/to/cognito-gate]
set -euo pipefail
here=$(dirname "$0")
bin=$(realpath "${1:-$here/../../target/debug/cognito-gate}")
cd "$here"
source ../schemas.sh
"$venv/bin/kubernetes-validate" --strict -k 1.30.0 configmap.yaml deployment.yaml service.yaml

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$venv/bin/python" - "$work" <<'PY'
import sys, yaml
with open("configmap.yaml") as f:
    data = yaml.safe_load(f)["data"]
for name, text in data.items():
    with open(f"{sys.argv[1]}/{name}", "w") as out:
        out.write(text)
PY
COGNITO_GATE_POLICY_FILE="$work/policy.toml" "$bin" check --config "$work/cognito-gate.toml"
