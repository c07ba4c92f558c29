#!/usr/bin/env bash
# Pipeline check (`make pipeline-test`): proves .gitlab-ci.yml on a machine
# without GitLab. Installs what it needs, starts a private dockerd and a
# registry on 127.0.0.1 with htpasswd auth, runs tests/pipeline/e2e_pipeline.py
# with pytest, and on every exit path removes the containers, volumes and
# networks, stops the registry and the engine by their pids and unmounts what
# the engine mounted. Extra arguments go to pytest (e.g. `-k schema`). Nothing
# is pulled from outside; every port is on 127.0.0.1.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"
# shellcheck source=scripts/container/lib.sh
source scripts/container/lib.sh

started=$SECONDS
if [ "$(id -u)" != 0 ]; then
  ct_die "needs root (dockerd, mounts, apt-get)"
  exit 1
fi

mkdir -p "$CT_CACHE_DIR"
# One run at a time per machine, and never beside the container check: the
# cache and the stand-ins are shared.
exec 9>"$CT_CACHE_DIR/run.lock"
if ! flock -w 900 9; then
  ct_die "another container-test or pipeline-test run holds $CT_CACHE_DIR/run.lock"
  exit 1
fi
[ $((SECONDS - started)) -lt 2 ] || ct_log "waited $((SECONDS - started)) s for $CT_CACHE_DIR/run.lock"
started=$SECONDS

STATE=""
WORK=$(mktemp -d /tmp/pl-run.XXXXXX)
export PL_WORK_DIR=$WORK
export CT_METRICS_FILE=$WORK/metrics.txt

cleanup() {
  local rc=$? leftover=0
  trap - EXIT INT TERM
  if [ -n "$STATE" ]; then
    if [ $rc -ne 0 ]; then
      for log in "$STATE/dockerd.log" "$STATE/registry/registry.log"; do
        [ -s "$log" ] || continue
        echo "--- last lines of $log ---" >&2
        tail -n 15 "$log" >&2
      done
    fi
    local stop_started=$SECONDS
    # gitlab-ci-local and its jobs, if pytest was interrupted mid-run.
    ct_pipeline_stop_leftovers "$WORK" "${PL_SNAPSHOT_DIR:-$CT_CACHE_DIR/pipeline-snapshot}"
    ct_registry_stop "$STATE/registry"
    ct_engine_stop "$STATE" || leftover=1
    ct_log "registry and engine stopped, cleaned up in $((SECONDS - stop_started)) s"
  fi
  if [ -s "$CT_METRICS_FILE" ]; then
    echo
    echo "Measurements:"
    sed 's/^/  /' "$CT_METRICS_FILE"
  fi
  # gitlab-ci-local's output of each run, kept until the next run.
  if [ -d "$WORK/logs" ]; then
    rm -rf "$CT_CACHE_DIR/pipeline-logs"
    mv "$WORK/logs" "$CT_CACHE_DIR/pipeline-logs"
    [ $rc -eq 0 ] || echo "gitlab-ci-local output of each run: $CT_CACHE_DIR/pipeline-logs/" >&2
  fi
  rm -rf "$WORK"
  if [ $leftover -ne 0 ]; then
    echo "FAIL: cleanup left processes or mounts behind (see above)"
    rc=1
  fi
  if [ $rc -eq 0 ]; then
    echo "PASS: pipeline check ($((SECONDS - started)) s); registry and engine stopped, nothing left mounted"
  else
    echo "FAIL: pipeline check (exit $rc, $((SECONDS - started)) s)"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ct_install_host_packages
ct_pipeline_host_packages
ct_pipeline_tools
ct_log "tools ready after $((SECONDS - started)) s"

export PL_REGISTRY_PORT=${PL_REGISTRY_PORT:-5000}
export PL_REGISTRY=127.0.0.1:$PL_REGISTRY_PORT
for port in "$PL_REGISTRY_PORT" "${PL_PG_PORT:-25532}" "${PL_REDIS_PORT:-26479}" "${PL_SSH_PORT:-22222}" \
  "${PL_HTTP_PORT:-28180}" "${PL_HTTPS_PORT:-28543}" "${PL_CHECK_PORT:-28190}"; do
  if ss -Htln "sport = :$port" | grep -q .; then
    ct_die "port $port is taken on this machine; set the matching PL_*_PORT (tests/pipeline/README.md)"
    exit 1
  fi
done

STATE=$(mktemp -d /tmp/pl.XXXXXX)
ct_engine_start "$STATE"
export CT_STATE_DIR=$STATE

# A fresh password per run; the jobs get it as CI_REGISTRY_PASSWORD.
export PL_REGISTRY_USER=ci-pipeline
PL_REGISTRY_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
export PL_REGISTRY_PASSWORD
ct_registry_start "$STATE/registry" "$PL_REGISTRY" "$PL_REGISTRY_USER" "$PL_REGISTRY_PASSWORD"

PYTHONDONTWRITEBYTECODE=1 "$CT_TOOLS_BIN/pytest" -c tests/pipeline/pytest.ini --rootdir tests/pipeline \
  --basetemp "$WORK/pytest" tests/pipeline "$@"
