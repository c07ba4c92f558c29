#!/usr/bin/env bash
# Container end-to-end check (`make container-test`): installs what it needs,
# starts a private dockerd, runs tests/container/e2e_container.py with pytest,
# and on every exit path removes the containers, volumes and networks, stops the
# engine by its pid and unmounts what it mounted. Extra arguments go to pytest
# (e.g. `-k local`). Nothing is pulled; test ports are on 127.0.0.1 only.
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
# One run at a time per machine: the cache and the fixed test ports are shared.
exec 9>"$CT_CACHE_DIR/run.lock"
if ! flock -w 600 9; then
  ct_die "another container-test run holds $CT_CACHE_DIR/run.lock"
  exit 1
fi

STATE=""
WORK=$(mktemp -d /tmp/ct-run.XXXXXX)
export CT_METRICS_FILE=$WORK/metrics.txt

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
  rm -rf "$WORK"
  if [ $leftover -ne 0 ]; then
    echo "FAIL: cleanup left processes or mounts behind (see above)"
    rc=1
  fi
  if [ $rc -eq 0 ]; then
    echo "PASS: container end-to-end check ($((SECONDS - started)) s); engine stopped, nothing left mounted"
  else
    echo "FAIL: container end-to-end check (exit $rc, $((SECONDS - started)) s)"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ct_install_host_packages
ct_tools_venv
ct_log "tools ready after $((SECONDS - started)) s"

STATE=$(mktemp -d /tmp/ct.XXXXXX)
ct_engine_start "$STATE"
export CT_STATE_DIR=$STATE

PYTHONDONTWRITEBYTECODE=1 "$CT_TOOLS_BIN/pytest" -c tests/container/pytest.ini --rootdir tests/container \
  --basetemp "$WORK/pytest" tests/container "$@"
