#!/usr/bin/env bash
# Pipeline proof (`make pipeline-test`): proves .gitlab-ci.yml on a machine
# without GitLab. Installs what it needs, starts a private dockerd and a
# registry on 127.0.0.1 with htpasswd auth, runs proofs/pipeline/e2e_pipeline.py
# with pytest, and on every exit path also stops gitlab-ci-local's leftovers and
# the registry by its pid. Extra arguments go to pytest (e.g. `-k schema`).
# Nothing is pulled from outside; every port is on 127.0.0.1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=proofs/lib.sh
source proofs/lib.sh

ct_proof_begin "pipeline check"
export PL_WORK_DIR=$WORK

ct_proof_cleanup() {
  local rc=$1
  [ -n "$STATE" ] || return 0
  if [ "$rc" -ne 0 ] && [ -s "$STATE/registry/registry.log" ]; then
    echo "--- last lines of $STATE/registry/registry.log ---" >&2
    tail -n 15 "$STATE/registry/registry.log" >&2
  fi
  # gitlab-ci-local and its jobs, if pytest was interrupted mid-run.
  ct_pipeline_stop_leftovers "$WORK" "${PL_SNAPSHOT_DIR:-$CT_CACHE_DIR/pipeline-snapshot}"
  ct_registry_stop "$STATE/registry"
  # gitlab-ci-local's output of each run, kept until the next run.
  if [ -d "$WORK/logs" ]; then
    rm -rf "$CT_CACHE_DIR/pipeline-logs"
    mv "$WORK/logs" "$CT_CACHE_DIR/pipeline-logs"
    [ "$rc" -eq 0 ] || echo "gitlab-ci-local output of each run: $CT_CACHE_DIR/pipeline-logs/" >&2
  fi
}

ct_install_host_packages
ct_pipeline_host_packages
ct_pipeline_tools
ct_log "tools ready after $((SECONDS - CT_PROOF_STARTED)) s"

export PL_REGISTRY_PORT=${PL_REGISTRY_PORT:-5000}
export PL_REGISTRY=127.0.0.1:$PL_REGISTRY_PORT
ct_ports_free "$PL_REGISTRY_PORT" "${PL_PG_PORT:-25532}" "${PL_REDIS_PORT:-26479}" "${PL_SSH_PORT:-22222}" \
  "${PL_HTTP_PORT:-28180}" "${PL_HTTPS_PORT:-28543}" "${PL_CHECK_PORT:-28190}"

ct_proof_engine
# A fresh password per run; the jobs get it as CI_REGISTRY_PASSWORD.
export PL_REGISTRY_USER=ci-pipeline
PL_REGISTRY_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
export PL_REGISTRY_PASSWORD
ct_registry_start "$STATE/registry" "$PL_REGISTRY" "$PL_REGISTRY_USER" "$PL_REGISTRY_PASSWORD"
ct_proof_pytest proofs/pipeline "$@"
