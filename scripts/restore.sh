#!/usr/bin/env bash
# Restore a dump made by scripts/backup.sh, replacing the contents of the target database.
#
#   DATABASE_URL=postgresql://items:PASSWORD@db:5432/items scripts/restore.sh backups/items-20261126T061500.123Z.dump
#   scripts/restore.sh backups/items-....dump postgresql://items@db:5432/items   # no password in an argument
#
# The password reaches pg_restore through the environment (PGPASSWORD), never its command
# line, which `ps` shows to every user.
#
# The database must exist (if it was dropped: createdb it, empty). Everything runs in one
# transaction, so a failed restore changes nothing. Objects are recreated owned by the user
# of the URL, without the dump's grants. Stop the API first (or take it out of the load
# balancer): requests during a restore would see tables disappear and come back.
# Asks for confirmation when run from a terminal; pass --yes to skip the question.
set -euo pipefail
# shellcheck source=scripts/pg-url.sh
source "$(dirname "$0")/pg-url.sh"

yes=false
if [[ "${1:-}" == "--yes" ]]; then
  yes=true
  shift
fi
backup="${1:-}"
[[ $# -gt 1 ]] && pg_refuse_password_argument "$2"
url="${2:-${DATABASE_URL:-}}"
if [[ -z "$backup" || -z "$url" ]]; then
  echo "usage: scripts/restore.sh [--yes] BACKUP_FILE [DATABASE_URL] (or set DATABASE_URL)" >&2
  exit 2
fi
pg_url_from "$url"
if [[ ! -r "$backup" ]]; then
  echo "cannot read $backup" >&2
  exit 2
fi

# A readable archive, checked before anything in the database is touched.
pg_restore --list "$backup" >/dev/null

if [[ "$yes" == false && -t 0 ]]; then
  read -r -p "Replace the contents of the database with $backup? [y/N] " answer
  [[ "$answer" == [yY]* ]] || { echo "restore cancelled" >&2; exit 1; }
fi

pg_restore --clean --if-exists --no-owner --no-privileges --single-transaction --exit-on-error \
  --dbname="$PG_URL" "$backup"
echo "restored $backup"
