#!/usr/bin/env bash
# Validates the Envoy Gateway example with ../validate-crds.mjs: the HTTPRoute and
# ReferenceGrant against the Gateway API schemas, the SecurityPolicy's fields against
# Envoy Gateway's documented API. The gate itself is deploy/istio/gate.yaml.
# Use: deploy/envoy-gateway/validate.sh
set -euo pipefail
cd "$(dirname "$0")"
source ../schemas.sh
cp ../validate-crds.mjs "$npm_dir/" && node "$npm_dir/validate-crds.mjs" security-policy.yaml
