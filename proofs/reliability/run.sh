#!/usr/bin/env bash
# Reliability proof (`make reliability-test`): faults under load, fuzzing and
# backup/restore against the real server on a throwaway PostgreSQL cluster run
# as the postgres user (proofs/reliability/README.md). Bounded to 6 minutes;
# SIGINT lets pytest stop its servers and delete its cluster. Extra arguments
# go to pytest. Every request goes to 127.0.0.1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=proofs/lib.sh
source proofs/lib.sh

ct_proof_begin "reliability proof"
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || ct_apt_ensure postgresql-15
ct_tools_venv
ct_log "tools ready after $((SECONDS - CT_PROOF_STARTED)) s"
PYTHONDONTWRITEBYTECODE=1 timeout --signal=INT --kill-after=30 360 \
  "$CT_TOOLS_BIN/pytest" proofs/reliability -p no:cacheprovider "$@"
