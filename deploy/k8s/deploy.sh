#!/usr/bin/env bash
# Deploy the Items API to the cluster kubectl points at: migrations first, then the API.
#
#   deploy/k8s/deploy.sh production sha-0123abcd            # migrate, roll out, wait
#   deploy/k8s/deploy.sh staging sha-0123abcd --render      # print the manifests only
#
# IMAGE overrides the repository (default: the placeholder in the overlays). The tag
# must be immutable: sha-<git sha> as the pipeline pushes it, never "latest".
# The real Secret "items-api" must exist in the namespace (base/secret.template.yaml).
set -euo pipefail

usage() { echo "usage: $0 staging|production sha-<git sha> [--render]" >&2; exit 2; }
[[ $# -ge 2 && $# -le 3 ]] || usage
overlay=$1 tag=$2 mode=${3:-apply}
here=$(cd "$(dirname "$0")" && pwd)
[[ -d "$here/overlays/$overlay" ]] || usage
[[ "$tag" =~ ^sha-[0-9a-f]{7,40}$ ]] || { echo "refusing tag '$tag': use sha-<git sha>" >&2; exit 2; }
[[ "$mode" == apply || "$mode" == --render ]] || usage
placeholder=registry.gitlab.com/your-group/project-01-container-api
image=${IMAGE:-$placeholder}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A throwaway kustomization on top of a copy of the overlay sets the image: the
# files in git stay as they are, and what is applied is what --render prints.
# (Kustomize loads bases by relative path only, hence the copy.)
cp -R "$here/base" "$here/overlays" "$work/"
mkdir "$work/release"
cat >"$work/release/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../overlays/$overlay
images:
  - name: $placeholder
    newName: $image
    newTag: $tag
YAML
kubectl kustomize "$work/release" >"$work/manifests.yaml"
if [[ "$mode" == --render ]]; then
  cat "$work/manifests.yaml"
  exit 0
fi

namespace=$(sed -n 's/^namespace: *//p' "$here/overlays/$overlay/kustomization.yaml")
job=items-api-migrate

# 1. Everything the Job needs (namespace, service account, config) and the Job
#    itself: objects that are not part of the API component. A Job's pod template
#    cannot change, so the previous release's run is deleted first.
kubectl -n "$namespace" delete job "$job" --ignore-not-found --wait=true
kubectl apply -f "$work/manifests.yaml" -l 'app.kubernetes.io/component notin (api)'

# 2. Wait for the migration to finish; a failure stops the deploy here, with the
#    old pods still serving.
deadline=$((SECONDS + 660))
while :; do
  state=$(kubectl -n "$namespace" get job "$job" \
    -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type} {end}')
  case "$state" in
    *Complete*) break ;;
    *Failed*)
      kubectl -n "$namespace" logs "job/$job" --all-containers --tail=100 >&2 || true
      echo "migration failed: nothing else was applied" >&2
      exit 1 ;;
  esac
  ((SECONDS < deadline)) || { echo "migration did not finish in time" >&2; exit 1; }
  sleep 3
done

# 3. The API: Deployment, Service, autoscaler, disruption budget, network policy,
#    ingress. The rollout replaces pods one at a time (maxUnavailable 0).
kubectl apply -f "$work/manifests.yaml" -l app.kubernetes.io/component=api
kubectl -n "$namespace" rollout status deployment/items-api --timeout=10m
