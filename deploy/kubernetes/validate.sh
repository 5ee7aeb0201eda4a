#!/usr/bin/env bash
# Validates the manifests against the Kubernetes schemas (kubernetes-validate, offline,
# strict: unknown fields fail), checks the production habits the example promises, and
# checks the config and policy embedded in the ConfigMap with `cognito-gate check`.
# It does not run a cluster.
# Use: deploy/kubernetes/validate.sh [path/to/cognito-gate]
set -euo pipefail
here=$(dirname "$0")
bin=$(realpath "${1:-$here/../../target/debug/cognito-gate}")
cd "$here"
source ../schemas.sh
"$venv/bin/kubernetes-validate" --strict -k 1.30.0 configmap.yaml deployment.yaml service.yaml networkpolicy.yaml

"$venv/bin/python" - <<'PY'
import yaml
docs = {}
for name in ["kustomization.yaml", "deployment.yaml", "networkpolicy.yaml", "configmap.yaml"]:
    with open(name) as f:
        docs[name] = yaml.safe_load(f)
assert "networkpolicy.yaml" in docs["kustomization.yaml"]["resources"]
pod = docs["deployment.yaml"]["spec"]["template"]["spec"]
assert pod["automountServiceAccountToken"] is False
containers = {c["name"]: c for c in pod["containers"]}
gate, app = containers["cognito-gate"], containers["app"]
gate_delay = gate["lifecycle"]["preStop"]["sleep"]["seconds"]
assert gate_delay >= 5
# The app listens on loopback only, and exposes no port.
assert "-listen=127.0.0.1:3000" in app["args"] and "ports" not in app
# The ConfigMap is mounted as a folder (no subPath), so updates reach the pod.
assert all("subPath" not in m for m in gate["volumeMounts"])
config = docs["configmap.yaml"]["data"]["cognito-gate.toml"]
assert 'url = "http://127.0.0.1:3000"' in config
shutdown = int(config.split('shutdown_timeout = "')[1].split("s")[0])
assert pod["terminationGracePeriodSeconds"] > gate_delay + shutdown
assert app["lifecycle"]["preStop"]["sleep"]["seconds"] >= gate_delay + shutdown
ingress_ports = {p["port"] for rule in docs["networkpolicy.yaml"]["spec"]["ingress"] for p in rule["ports"]}
assert ingress_ports == {8080, 9090}, ingress_ports
print("production habits: ok")
PY

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
