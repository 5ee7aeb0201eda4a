# Sourced by the validate.sh scripts: installs, once, the schema tools they use into
# folders outside the repository: kubernetes-validate (PyPI) and the published CRD
# schemas of Istio and the Gateway API (npm @kubernetes-models), with a YAML parser.
venv="${KUBE_VALIDATE_VENV:-/tmp/cognito-gate-kube-validate}"
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet kubernetes-validate
fi
npm_dir="${CRD_SCHEMAS_DIR:-/tmp/cognito-gate-crd-schemas}"
if [ ! -d "$npm_dir/node_modules/@kubernetes-models/istio" ]; then
  mkdir -p "$npm_dir"
  (cd "$npm_dir" && npm install --silent --no-audit --no-fund \
    @kubernetes-models/istio@3.0.1 @kubernetes-models/gateway-api@2.0.0 yaml@2)
fi
