#!/usr/bin/env bash
# Container end-to-end proof (`make container-test`): installs what it needs,
# starts a private dockerd, runs proofs/container/e2e_container.py with pytest,
# and on every exit path removes the containers, volumes and networks, stops the
# engine by its pid and unmounts what it mounted. Extra arguments go to pytest
# (e.g. `-k local`). Nothing is pulled; test ports are on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=proofs/lib.sh
source proofs/lib.sh

ct_proof_begin "container end-to-end check"
ct_install_host_packages
ct_tools_venv
ct_log "tools ready after $((SECONDS - CT_PROOF_STARTED)) s"
ct_proof_engine
ct_proof_pytest proofs/container "$@"
