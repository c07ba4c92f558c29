#!/usr/bin/env bash
# Back up the Items API database: pg_dump custom format, timestamped, keeping the newest N.
#
#   DATABASE_URL=postgresql://items:PASSWORD@db:5432/items scripts/backup.sh
#   scripts/backup.sh postgresql://items@db:5432/items   # no password in an argument
#
# BACKUP_DIR   where dumps go (default: backups), mode 0700; files items-<UTC time>.dump, 0600
# BACKUP_KEEP  how many of the newest dumps to keep (default: 14); older ones are deleted
#
# The URL may be the app's own DATABASE_URL (postgresql+psycopg://). Its password reaches
# pg_dump through the environment (PGPASSWORD), never its command line, which `ps` shows to
# every user; an argument with a password is refused. pg_dump must be of the server's
# major version or newer. The dump is written under a temporary name and
# checked with pg_restore --list before it counts: an interrupted or failed run never
# leaves a file that looks like a backup, and never prunes. Prints the new file's path.
set -euo pipefail
# shellcheck source=scripts/pg-url.sh
source "$(dirname "$0")/pg-url.sh"
# Dumps hold every row and token hash: readable by this user only.
umask 077

[[ $# -gt 0 ]] && pg_refuse_password_argument "$1"
url="${1:-${DATABASE_URL:-}}"
if [[ -z "$url" ]]; then
  echo "usage: scripts/backup.sh [DATABASE_URL] (or set DATABASE_URL)" >&2
  exit 2
fi
pg_url_from "$url"
dir="${BACKUP_DIR:-backups}"
keep="${BACKUP_KEEP:-14}"
if ! [[ "$keep" =~ ^[1-9][0-9]*$ ]]; then
  echo "BACKUP_KEEP must be a whole number of at least 1; got '$keep'" >&2
  exit 2
fi

mkdir -p "$dir"
chmod 0700 "$dir"
backup="$dir/items-$(date -u +%Y%m%dT%H%M%S.%3NZ).dump"
partial="$backup.partial"
trap 'rm -f "$partial"' EXIT

pg_dump --format=custom --file="$partial" --dbname="$PG_URL"
pg_restore --list "$partial" >/dev/null
mv "$partial" "$backup"

# Newest first (the names sort by time); everything past the first $keep goes.
mapfile -t backups < <(find "$dir" -maxdepth 1 -name 'items-*.dump' -type f | LC_ALL=C sort -r)
for old in "${backups[@]:$keep}"; do
  rm -f -- "$old"
done
echo "$backup"
