#!/usr/bin/env bash
# A private Docker engine for checks on machines without one (CI here).
#
#   eval "$(proofs/engine.sh start /tmp/ct.abc)"  # prints the exports
#   proofs/engine.sh standins                      # needs DOCKER_HOST
#   proofs/engine.sh stop /tmp/ct.abc              # always, e.g. from a trap
#
# `start` installs docker.io/debootstrap and the pinned tools if missing. Use a
# short, fresh STATE_DIR (containerd's sockets live below it). In a script,
# prefer sourcing lib.sh and calling ct_engine_start/ct_engine_stop directly.
set -euo pipefail
# shellcheck source=proofs/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case ${1:-} in
  start)
    [ -n "${2:-}" ] || { echo "usage: $0 start STATE_DIR" >&2; exit 2; }
    ct_install_host_packages
    ct_tools_venv
    ct_engine_start "$2"
    printf 'export DOCKER_HOST=%q DOCKER_CONFIG=%q CT_TOOLS_BIN=%q\n' "$DOCKER_HOST" "$DOCKER_CONFIG" "$CT_TOOLS_BIN"
    ;;
  stop)
    [ -n "${2:-}" ] || { echo "usage: $0 stop STATE_DIR" >&2; exit 2; }
    ct_engine_stop "$2"
    ;;
  standins)
    [ -n "${DOCKER_HOST:-}" ] || { echo "DOCKER_HOST is not set: start the engine first" >&2; exit 2; }
    ct_build_standins
    ;;
  *)
    echo "usage: $0 start STATE_DIR | stop STATE_DIR | standins" >&2
    exit 2
    ;;
esac
