#!/usr/bin/env bash
# Offline checks of the deployment artefacts (no cluster, no docker engine needed):
#   helm lint --strict (default values, multi-replica values), helm template | kubernetes-validate
#   --strict for both, the SQLite replica guard, and hadolint on the Dockerfile.
# Usage: scripts/check-deploy.sh      (installs missing tools with scripts/install-deploy-tools.sh)
# Env:   VENV (default .venv), K8S_VERSION (default 1.32.0)
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export VENV="${VENV:-.venv}"
K8S_VERSION="${K8S_VERSION:-1.32.0}"
HELM="$ROOT/.tools/bin/helm"
KV="$VENV/bin/kubernetes-validate"
HADOLINT="$VENV/bin/hadolint"
CHART=helm
MULTI=helm/ci/multi-replica-postgres.yaml
GUARD_MSG="SQLite cannot be shared between pods"

if [ ! -x "$HELM" ] || [ ! -x "$KV" ] || [ ! -x "$HADOLINT" ]; then
    scripts/install-deploy-tools.sh || { echo "check-deploy: tool installation failed" >&2; exit 1; }
fi

failures=0
step() {  # step NAME CMD...: run, report, count failures
    local name="$1"; shift
    local out
    if out="$("$@" 2>&1)"; then
        echo "ok    $name"
    else
        echo "FAIL  $name"
        printf '%s\n' "$out" | sed 's/^/      /'
        failures=$((failures + 1))
    fi
}

render_validate() {  # render_validate [helm template args...]
    local manifest
    manifest="$("$HELM" template relay "$CHART" "$@")" || return 1
    printf '%s\n' "$manifest" | "$KV" --strict -k "$K8S_VERSION" --quiet -
}

replica_guard() {  # each multi-pod combination on SQLite must fail with the message
    local args out
    for args in "--set api.replicas=3" "--set mode=split" "--set api.autoscaling.enabled=true"; do
        # shellcheck disable=SC2086
        if out="$("$HELM" template relay "$CHART" $args 2>&1)"; then
            echo "helm template $args rendered on SQLite; expected a failure"
            return 1
        fi
        if ! grep -qF "$GUARD_MSG" <<<"$out"; then
            echo "helm template $args failed without the guard message:"
            echo "$out"
            return 1
        fi
    done
}

step "helm lint --strict (default values)"          "$HELM" lint --strict "$CHART"
step "helm lint --strict ($MULTI)"                   "$HELM" lint --strict "$CHART" -f "$MULTI"
step "kubernetes-validate $K8S_VERSION (default values)" render_validate
step "kubernetes-validate $K8S_VERSION ($MULTI)"     render_validate -f "$MULTI"
step "replica guard: several pods on SQLite fail"    replica_guard
step "hadolint Dockerfile"                           "$HADOLINT" --failure-threshold style Dockerfile

if [ "$failures" -gt 0 ]; then
    echo "check-deploy: $failures check(s) failed" >&2
    exit 1
fi
echo "check-deploy: all checks passed"
