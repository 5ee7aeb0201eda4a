// Validates custom resources against the schemas their projects publish, as packaged
// in @kubernetes-models (Istio, Gateway API): types, enums and required fields. For
// what no reachable package publishes a schema of (Istio's meshConfig extension
// providers, Envoy Gateway's SecurityPolicy), it checks the fields these examples
// use against the documented API, refusing any other field.
// Use: node validate-crds.mjs FILE... from a folder whose node_modules holds them
// (deploy/schemas.sh installs them and the validate.sh scripts copy this file there).
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";
import { AuthorizationPolicy } from "@kubernetes-models/istio/security.istio.io/v1/AuthorizationPolicy";
import { IstioOperator } from "@kubernetes-models/istio/install.istio.io/v1alpha1/IstioOperator";
import { DestinationRule } from "@kubernetes-models/istio/networking.istio.io/v1/DestinationRule";
import { HTTPRoute } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/HTTPRoute";
import { ReferenceGrant } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1beta1/ReferenceGrant";

const published = {
  "security.istio.io/v1/AuthorizationPolicy": AuthorizationPolicy,
  "install.istio.io/v1alpha1/IstioOperator": IstioOperator,
  "networking.istio.io/v1/DestinationRule": DestinationRule,
  "gateway.networking.k8s.io/v1/HTTPRoute": HTTPRoute,
  "gateway.networking.k8s.io/v1beta1/ReferenceGrant": ReferenceGrant,
};

// Each key: the fields allowed at that path and their types ("object" descends).
const documented = {
  // istio.mesh.v1alpha1 MeshConfig.ExtensionProvider.EnvoyExternalAuthorizationGrpcProvider
  envoyExtAuthzGrpc: {
    service: "string", port: "number", timeout: "string", failOpen: "boolean",
    statusOnError: "string", includeRequestBodyInCheck: "object", clearRouteCache: "boolean",
  },
  // gateway.envoyproxy.io/v1alpha1 SecurityPolicy
  securityPolicySpec: { targetRefs: "array", targetSelectors: "array", extAuth: "object" },
  extAuth: {
    grpc: "object", http: "object", headersToExtAuth: "array", failOpen: "boolean",
    bodyToExtAuth: "object", recomputeRoute: "boolean", contextExtensions: "array", timeout: "string",
  },
  grpc: { backendRefs: "array", backendSettings: "object" },
  backendRef: { group: "string", kind: "string", name: "string", namespace: "string", port: "number", weight: "number" },
  targetRef: { group: "string", kind: "string", name: "string", sectionName: "string" },
};

function check(where, value, fields, problems) {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    problems.push(`${where}: must be an object`);
    return;
  }
  for (const [key, v] of Object.entries(value)) {
    const want = fields[key];
    const got = Array.isArray(v) ? "array" : typeof v;
    if (!want) problems.push(`${where}.${key}: not a field of this API`);
    else if (want !== got) problems.push(`${where}.${key}: must be ${want}, is ${got}`);
  }
}

let problems = [];
let count = 0;
for (const file of process.argv.slice(2)) {
  for (const doc of parseAllDocuments(readFileSync(file, "utf8"))) {
    const o = doc.toJS();
    if (!o) continue;
    count++;
    const [group] = o.apiVersion.split("/");
    const where = `${file}: ${o.kind} ${o.metadata?.name}`;
    const Model = published[`${o.apiVersion}/${o.kind}`];
    if (Model) {
      try { new Model(o).validate(); } catch (e) { problems.push(`${where}: ${e.message}`); }
    }
    if (o.kind === "IstioOperator") {
      const providers = o.spec?.meshConfig?.extensionProviders ?? [];
      if (providers.length === 0) problems.push(`${where}: no extensionProviders`);
      providers.forEach((p, i) => {
        if (typeof p.name !== "string") problems.push(`${where}: extensionProviders[${i}].name is required`);
        if (!p.envoyExtAuthzGrpc) problems.push(`${where}: extensionProviders[${i}] is not envoyExtAuthzGrpc`);
        else check(`${where}: extensionProviders[${i}].envoyExtAuthzGrpc`, p.envoyExtAuthzGrpc, documented.envoyExtAuthzGrpc, problems);
      });
    } else if (o.kind === "SecurityPolicy" && group === "gateway.envoyproxy.io") {
      check(`${where}: spec`, o.spec, documented.securityPolicySpec, problems);
      (o.spec.targetRefs ?? []).forEach((t, i) => check(`${where}: targetRefs[${i}]`, t, documented.targetRef, problems));
      check(`${where}: extAuth`, o.spec.extAuth, documented.extAuth, problems);
      check(`${where}: extAuth.grpc`, o.spec.extAuth?.grpc, documented.grpc, problems);
      (o.spec.extAuth?.grpc?.backendRefs ?? []).forEach((b, i) =>
        check(`${where}: extAuth.grpc.backendRefs[${i}]`, b, documented.backendRef, problems));
    } else if (!Model) {
      problems.push(`${where}: no schema known for ${o.apiVersion} ${o.kind}`);
    }
  }
}
if (problems.length) {
  console.error(problems.join("\n"));
  process.exit(1);
}
console.log(`${count} custom resources valid`);
