#!/usr/bin/env bash
# Deploy proof (`make deploy-test`): scripts/deploy.sh rolls the production
# compose stack from one release to another under load, through Caddy on
# 127.0.0.1, with no failed request (proofs/deploy/README.md). On a private
# dockerd with the stand-in images, like the other proofs (proofs/lib.sh).
# Extra arguments go to pytest. Nothing is pulled; every request goes to 127.0.0.1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=proofs/lib.sh
source proofs/lib.sh

export CT_DEPLOY_HTTP_PORT=${CT_DEPLOY_HTTP_PORT:-27080}
export CT_DEPLOY_HTTPS_PORT=${CT_DEPLOY_HTTPS_PORT:-27443}

ct_proof_begin "deploy proof"
ct_ports_free "$CT_DEPLOY_HTTP_PORT" "$CT_DEPLOY_HTTPS_PORT"
export CT_DEPLOY_WORK=$WORK CT_DEPLOY_REPORT=$WORK/report.txt
ct_proof_cleanup() { [ ! -s "$CT_DEPLOY_REPORT" ] || { echo; cat "$CT_DEPLOY_REPORT"; }; }

ct_install_host_packages
ct_tools_venv
ct_log "tools ready after $((SECONDS - CT_PROOF_STARTED)) s"
ct_proof_engine
ct_build_standins
ct_caddy_pinned_image
ct_log "engine and images ready after $((SECONDS - CT_PROOF_STARTED)) s"
ct_proof_pytest proofs/deploy "$@"
