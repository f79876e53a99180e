#!/usr/bin/env bash
# Checks the Helm charts in deploy/charts (apono-connector, apono-vault, apono-agent) and
# deploy/aws/eks-values.yaml as far as this machine allows (no Kubernetes API server runs
# here): `helm lint --strict` and `helm template` with the defaults (the required values set)
# and the realistic values files in each chart's ci/, every rendered manifest validated with
# `kubernetes-validate --strict` for every Kubernetes version the charts claim (kubeVersion
# >=1.30: 1.30 to 1.37, the newest the validator knows), the ServiceMonitor (a CRD the
# validator has no schema for) checked with the prometheus-operator models, the refusals at
# template time, and the RBAC and security context rendered. Any failure exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/deploy-tools.sh --charts-only)"
PY=.venv/bin/python
VALIDATE=.venv/bin/kubernetes-validate
[ -x "$VALIDATE" ] || { echo "kubernetes-validate missing: pip install -r scripts/requirements-test.txt" >&2; exit 1; }
helm() { "$APONO_HELM" "$@"; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
C=deploy/charts/apono-connector
V=deploy/charts/apono-vault
A=deploy/charts/apono-agent
# The agent chart's required values (none has a usable default); --set, so a later --set overrides one.
AGENT_REQUIRED=(--set apono.connectorId=site-a --set apono.controlPlaneUrl=https://apono.example.com:8443
  --set credential.existingSecret=apono-agent-credential --set controlPlaneCa.existingSecret=apono-control-plane-ca)
fail() { echo "deploy-check: $*" >&2; exit 1; }

echo "deploy-check: helm lint" >&2
helm lint --strict "$C" --set apono.connectorId=lint --set allowInsecureListen=true >/dev/null
for f in "$C"/ci/*.yaml; do helm lint --strict "$C" -f "$f" >/dev/null; done
helm lint --strict "$V" >/dev/null
for f in "$V"/ci/*.yaml; do helm lint --strict "$V" -f "$f" >/dev/null; done
helm lint --strict "$A" "${AGENT_REQUIRED[@]}" >/dev/null
for f in "$A"/ci/*.yaml; do helm lint --strict "$A" -f "$f" >/dev/null; done

echo "deploy-check: helm template" >&2
helm template apono-connector "$C" -n apono-connector --set apono.connectorId=default --set allowInsecureListen=true >"$out/connector-default.yaml"
for f in "$C"/ci/*.yaml; do
  helm template apono-connector "$C" -n apono-connector -f "$f" >"$out/connector-$(basename "$f")"
done
# README's command, flag for flag (less the cluster).
printf '[[users]]\nemail = "alice@example.com"\nadmin = true\n' >"$out/connector.toml.in"
helm template apono-connector "$C" -n apono-connector \
  --set-string apono.connectorId=prod-eu-1 --set serviceAccount.manageClusterRoles=true \
  --set tls.existingSecret=apono-connector-tls \
  --set allowedSecretsToRead={db-admin\,apono-vault/apono-vault-role} \
  --set-file config.toml="$out/connector.toml.in" >"$out/connector-readme.yaml"
rm "$out/connector.toml.in"
grep -q 'alice@example.com' "$out/connector-readme.yaml" || fail "--set-file config.toml did not reach the ConfigMap"
grep -q '"apono-connector/db-admin,apono-vault/apono-vault-role"' "$out/connector-readme.yaml" \
  || fail "allowedSecretsToRead={a\\,b} did not reach APONO_CONNECTOR_ALLOWED_SECRETS_TO_READ"
# EKS with IRSA (deploy/aws/eks-values.yaml).
helm lint --strict "$C" -f deploy/aws/eks-values.yaml >/dev/null
helm template apono-connector "$C" -n apono-connector -f deploy/aws/eks-values.yaml >"$out/connector-eks.yaml"
grep -q 'eks.amazonaws.com/role-arn' "$out/connector-eks.yaml" || fail "the IRSA annotation is not rendered"
helm template apono-vault "$V" -n apono-vault >"$out/vault-default.yaml"
for f in "$V"/ci/*.yaml; do
  helm template apono-vault "$V" -n apono-vault -f "$f" >"$out/vault-$(basename "$f")"
done
helm template apono-agent "$A" -n apono-agent "${AGENT_REQUIRED[@]}" >"$out/agent-default.yaml"
for f in "$A"/ci/*.yaml; do
  helm template apono-agent "$A" -n apono-agent -f "$f" >"$out/agent-$(basename "$f")"
done
# docs/deploy.md's command, flag for flag (less the cluster).
helm template apono-agent "$A" -n apono-agent \
  --set-string apono.connectorId=site-a --set apono.controlPlaneUrl=https://apono.example.com:8443 \
  --set credential.existingSecret=apono-agent-credential \
  --set controlPlaneCa.existingConfigMap=apono-control-plane-ca \
  --set 'secretStores={aws,kubernetes}' --set serviceAccount.manageClusterRoles=true \
  --set 'allowedSecretsToRead={ssh-admin}' --set replicaCount=2 >"$out/agent-docs.yaml"
grep -q -- '- --allowed-secrets-to-read=apono-agent/ssh-admin' "$out/agent-docs.yaml" \
  || fail "allowedSecretsToRead={ssh-admin} did not reach --allowed-secrets-to-read, qualified"
# README's agent command, flag for flag.
helm template apono-agent "$A" -n apono-agent \
  --set-string apono.connectorId=site-a --set apono.controlPlaneUrl=https://apono.example.com:8443 \
  --set credential.existingSecret=apono-agent-credential \
  --set controlPlaneCa.existingConfigMap=apono-control-plane-ca --set 'secretStores={aws}' >"$out/agent-readme.yaml"
grep -q -- '- --secret-store=aws' "$out/agent-readme.yaml" || fail "secretStores={aws} did not reach --secret-store"

echo "deploy-check: kubernetes-validate --strict, Kubernetes 1.30 to 1.37" >&2
for minor in 30 31 32 33 34 35 36 37; do
  "$VALIDATE" --strict --quiet -k "1.$minor.0" "$out"/*.yaml \
    | grep -v "Couldn't find schema for kind ServiceMonitor" || true
  # The exit status, without the pipe: any invalid manifest fails.
  "$VALIDATE" --strict --quiet --no-warn -k "1.$minor.0" "$out"/*.yaml >/dev/null \
    || fail "kubernetes-validate rejected a manifest for Kubernetes 1.$minor"
done
cp scripts/deploy-tools/check-servicemonitor.mjs "$APONO_NODE_MODULES/../"
node "$APONO_NODE_MODULES/../check-servicemonitor.mjs" "$out"/*.yaml || fail "ServiceMonitor invalid"

echo "deploy-check: refusals at template time" >&2
refused() {
  local want=$1; shift
  local msg
  if msg=$(helm template x "$@" 2>&1); then fail "rendered, but should refuse ($want): $*"; fi
  grep -qF -- "$want" <<<"$msg" || fail "refused without saying '$want': $msg"
}
refused "apono.connectorId is required" "$C"
refused "needs a PostgreSQL store" "$C" --set apono.connectorId=x --set replicaCount=3
refused "no TLS for the API" "$C" --set apono.connectorId=x
refused "needs masterKey.existingSecret" "$C" --set apono.connectorId=x --set allowInsecureListen=true --set database.existingSecret=db
refused "Additional property bogus is not allowed" "$C" --set apono.connectorId=x --set bogus=1
refused "Additional property replicas is not allowed" "$C" --set apono.connectorId=x --set image.replicas=1
refused "replicaCount: Invalid type" "$C" --set apono.connectorId=x --set replicaCount=three
refused "allowedSecretsToRead.0: Does not match pattern" "$C" --set apono.connectorId=x --set 'allowedSecretsToRead={Bad_Name}'
refused "set config.toml or config.existingSecret, not both" "$C" --set apono.connectorId=x --set allowInsecureListen=true --set config.toml=a --set config.existingSecret=b
refused "keyCustody must be one of" "$V" --set init.keyCustody=somewhere
refused "Additional property size is not allowed" "$V" --set vault.server.size=1Gi
# The agent chart: each required value in turn, from the full set less that one.
refused "apono.connectorId is required" "$A" "${AGENT_REQUIRED[@]}" --set apono.connectorId=
refused "apono.controlPlaneUrl is required" "$A" "${AGENT_REQUIRED[@]}" --set apono.controlPlaneUrl=
refused "apono.controlPlaneUrl must be an https:// URL" "$A" "${AGENT_REQUIRED[@]}" --set apono.controlPlaneUrl=http://apono.example.com:8080
refused "apono.controlPlaneUrl must be an https:// URL" "$A" "${AGENT_REQUIRED[@]}" --set apono.controlPlaneUrl=apono.example.com
refused "credential.existingSecret is required" "$A" "${AGENT_REQUIRED[@]}" --set credential.existingSecret=
refused "the control plane's CA is required" "$A" "${AGENT_REQUIRED[@]}" --set controlPlaneCa.existingSecret=
refused "not both" "$A" "${AGENT_REQUIRED[@]}" --set controlPlaneCa.existingConfigMap=ca
refused "Additional property systemRoots is not allowed" "$A" "${AGENT_REQUIRED[@]}" --set controlPlaneCa.existingSecret= --set controlPlaneCa.systemRoots=true
refused "apono.connectorId: Does not match pattern" "$A" "${AGENT_REQUIRED[@]}" --set apono.connectorId=Site_A
refused "secretStores.0 must be one of" "$A" "${AGENT_REQUIRED[@]}" --set 'secretStores={apono}'
refused "add kubernetes to secretStores" "$A" "${AGENT_REQUIRED[@]}" --set 'secretStores={aws}' --set 'allowedSecretsToRead={ssh-admin}'
refused "extraEnv: APONO_AGENT_CREDENTIAL is set by the chart" "$A" "${AGENT_REQUIRED[@]}" --set 'extraEnv[0].name=APONO_AGENT_CREDENTIAL' --set 'extraEnv[0].value=apono_agent_x'
refused "set HASHICORP_VAULT_CONFIG in extraEnv" "$A" "${AGENT_REQUIRED[@]}" --set 'secretStores={hashicorp_vault}'
refused "agent.actionTimeout: Does not match pattern" "$A" "${AGENT_REQUIRED[@]}" --set-string agent.actionTimeout=30
refused "Additional property service is not allowed" "$A" "${AGENT_REQUIRED[@]}" --set service.port=8080

echo "deploy-check: RBAC and security context as rendered" >&2
"$PY" - "$out" <<'PY'
import glob, os, sys, yaml
out = sys.argv[1]
def docs(name):
    return [d for d in yaml.safe_load_all(open(os.path.join(out, name))) if d]
def fail(msg):
    sys.exit(f"deploy-check: {msg}")
# sqlite values: manageClusterRoles with two secrets in two namespaces.
roles = {(d["metadata"]["namespace"], d["metadata"]["name"]): d for d in docs("connector-sqlite-values.yaml") if d["kind"] == "Role"}
want = {"apono-connector": ["ssh-admin"], "apono-vault": ["apono-vault-role"]}
got = {ns: r["rules"] for (ns, _), r in roles.items()}
for ns, names in want.items():
    rules = got.get(ns) or fail(f"no Role in {ns}: {sorted(got)}")
    if rules != [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": names}]:
        fail(f"the Role in {ns} grants more or other than get on {names}: {rules}")
if set(got) != set(want):
    fail(f"Roles in unexpected namespaces: {sorted(got)}")
# The defaults (manageClusterRoles=false): no RBAC at all.
if any(d["kind"] in ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding") for d in docs("connector-default.yaml")):
    fail("RBAC rendered without serviceAccount.manageClusterRoles")
for name in sorted(os.listdir(out)):
    for d in docs(name):
        if d["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            fail(f"{name}: cluster-wide RBAC rendered")
        if d["kind"] not in ("Deployment", "StatefulSet", "Job"):
            continue
        pod = d["spec"]["template"]["spec"]
        if pod.get("securityContext", {}).get("runAsNonRoot") is not True:
            fail(f"{name} {d['kind']}: pod may run as root")
        for c in pod["containers"]:
            sc = c.get("securityContext", {})
            ok = (sc.get("allowPrivilegeEscalation") is False and sc.get("readOnlyRootFilesystem") is True
                  and sc.get("capabilities", {}).get("drop") == ["ALL"])
            if not ok:
                fail(f"{name} {d['kind']}/{c['name']}: securityContext {sc}")
        if d["kind"] == "Deployment" and name.startswith("connector-"):
            probes = (c["livenessProbe"]["httpGet"]["path"], c["readinessProbe"]["httpGet"]["path"])
            if probes != ("/healthz", "/readyz"):
                fail(f"{name}: probes {probes}")
# The agent chart: outbound only, no state, the credential only ever as a mounted file.
agent_files = sorted(n for n in os.listdir(out) if n.startswith("agent-"))
if len(agent_files) < 4:
    fail(f"agent renderings missing: {agent_files}")
for name in agent_files:
    ds = docs(name)
    kinds = sorted(d["kind"] for d in ds)
    for k in ("Service", "Ingress", "PersistentVolumeClaim", "StatefulSet"):
        if k in kinds:
            fail(f"{name}: the agent chart renders a {k}")
    dep = [d for d in ds if d["kind"] == "Deployment"]
    if len(dep) != 1:
        fail(f"{name}: {len(dep)} Deployments")
    dep = dep[0]
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    if c["args"][0] != "agent" or any("credential" in a for a in c["args"]):
        fail(f"{name}: args {c['args']}")
    for k in ("ports", "livenessProbe", "readinessProbe", "startupProbe"):
        if k in c:
            fail(f"{name}: the agent serves no port, yet {k} is rendered")
    env = {e["name"]: e for e in c["env"]}
    if "APONO_AGENT_CREDENTIAL" in env:
        fail(f"{name}: the credential is in an environment variable")
    cred_volume = [v for v in pod["volumes"] if v["name"] == "credential"][0]["secret"]
    for e in c["env"]:
        ref = e.get("valueFrom", {}).get("secretKeyRef", {})
        if ref.get("name") == cred_volume["secretName"]:
            fail(f"{name}: {e['name']} takes its value from the credential's Secret")
    cred_mount = [m for m in c["volumeMounts"] if m["name"] == "credential"][0]
    (item,) = cred_volume["items"]
    if env["APONO_AGENT_CREDENTIAL_FILE"]["value"] != cred_mount["mountPath"] + "/" + item["path"] or not cred_mount.get("readOnly"):
        fail(f"{name}: APONO_AGENT_CREDENTIAL_FILE is not the read-only credential mount")
    ca_mount = [m for m in c["volumeMounts"] if m["name"] == "control-plane-ca"][0]
    ca_volume = [v for v in pod["volumes"] if v["name"] == "control-plane-ca"][0]
    ca_items = (ca_volume.get("secret") or ca_volume.get("configMap"))["items"]
    if env["APONO_AGENT_CA_FILE"]["value"] != ca_mount["mountPath"] + "/" + ca_items[0]["path"] or not ca_mount.get("readOnly"):
        fail(f"{name}: APONO_AGENT_CA_FILE is not the read-only CA mount")
    if not env["APONO_AGENT_CONTROL_PLANE"]["value"].startswith("https://"):
        fail(f"{name}: control plane {env['APONO_AGENT_CONTROL_PLANE']}")
    k8s_store = "--secret-store=kubernetes" in c["args"]
    if pod.get("automountServiceAccountToken") is not k8s_store:
        fail(f"{name}: service account token mounted={pod.get('automountServiceAccountToken')} with kubernetes store={k8s_store}")
    (np,) = [d for d in ds if d["kind"] == "NetworkPolicy"]
    if np["spec"]["policyTypes"] != ["Ingress", "Egress"] or np["spec"].get("ingress"):
        fail(f"{name}: the NetworkPolicy lets something in: {np['spec']}")
    pdbs = [d for d in ds if d["kind"] == "PodDisruptionBudget"]
    if (len(pdbs) == 1) != (dep["spec"]["replicas"] > 1):
        fail(f"{name}: {len(pdbs)} PodDisruptionBudgets for {dep['spec']['replicas']} replicas")
default = docs("agent-default.yaml")
if [d["spec"]["egress"] for d in default if d["kind"] == "NetworkPolicy"] != [[{}]]:
    fail("the agent's default NetworkPolicy does not allow all egress")
if any(d["kind"] in ("Role", "RoleBinding") for d in default):
    fail("agent: RBAC rendered without serviceAccount.manageClusterRoles")
roles = {d["metadata"]["namespace"]: d["rules"] for d in docs("agent-multi-site-values.yaml") if d["kind"] == "Role"}
want = {"apono-agent": ["ssh-admin"], "databases": ["postgres-admin"]}
if roles != {ns: [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": n}] for ns, n in want.items()}:
    fail(f"agent Roles grant more or other than get on {want}: {roles}")
if any(d["kind"] in ("Role", "RoleBinding") for d in docs("agent-vault-store-values.yaml")):
    fail("agent: RBAC rendered without serviceAccount.manageClusterRoles (vault-store values)")
# The vault chart's init Job and unsealer run vault-init; the keys secret is never readable
# by the connector (only the role secret is created with that label, by vault-init itself).
job = [d for d in docs("vault-default.yaml") if d["kind"] == "Job"][0]
args = job["spec"]["template"]["spec"]["containers"][0]["args"]
if args[0] != "vault-init" or "--unseal-only" in args:
    fail(f"init Job args {args}")
sts = [d for d in docs("vault-default.yaml") if d["kind"] == "StatefulSet"][0]
unsealer_rules = [d["rules"] for d in docs("vault-default.yaml") if d["kind"] == "Role" and d["metadata"]["name"].endswith("-unsealer")]
if unsealer_rules != [[{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["apono-vault-keys"]}]]:
    fail(f"the unsealer may do more than read the keys secret: {unsealer_rules}")
if not sts["spec"]["template"]["spec"]["serviceAccountName"].endswith("-unsealer"):
    fail("OpenBao's pod does not run as the unsealer service account")
claim = sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
svc = [d for d in docs("vault-default.yaml") if d["kind"] == "Service"][0]
if claim != "1Gi" or svc["spec"]["type"] != "ClusterIP" or svc["spec"]["ports"][0]["port"] != 8200:
    fail(f"vault defaults: volume {claim}, service {svc['spec']}")
print("deploy-check: charts ok", file=sys.stderr)
PY
