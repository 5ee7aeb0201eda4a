#!/usr/bin/env bash
# Validates the Istio example: the gate's Deployment, Service and ConfigMap against the
# Kubernetes schemas (kubernetes-validate, strict), the config and policy embedded in
# the ConfigMap with `cognito-gate check`, and the IstioOperator, AuthorizationPolicy
# and mTLS DestinationRule with ../validate-crds.mjs. It does not run a cluster.
# Use: deploy/istio/validate.sh [path/to/cognito-gate]
set -euo pipefail
here=$(dirname "$0")
bin=$(realpath "${1:-$here/../../target/debug/cognito-gate}")
cd "$here"
source ../schemas.sh
"$venv/bin/kubernetes-validate" --strict -k 1.30.0 gate.yaml
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$venv/bin/python" - "$work" <<'PY'
import sys, yaml
with open("gate.yaml") as f:
    data = next(d for d in yaml.safe_load_all(f) if d["kind"] == "ConfigMap")["data"]
for name, text in data.items():
    with open(f"{sys.argv[1]}/{name}", "w") as out:
        out.write(text)
PY
COGNITO_GATE_POLICY_FILE="$work/policy.toml" "$bin" check --config "$work/cognito-gate.toml"
cp ../validate-crds.mjs "$npm_dir/" && node "$npm_dir/validate-crds.mjs" mesh-config.yaml authorization-policy.yaml destination-rule-mtls.yaml
