#!/usr/bin/env bash
# Back up the Items API database: pg_dump custom format, timestamped, keeping the newest N.
#
#   DATABASE_URL=postgresql://items@db:5432/items scripts/backup.sh
#   scripts/backup.sh postgresql://items@db:5432/items
#
# BACKUP_DIR   where dumps go (default: backups); files are items-<UTC time>.dump
# BACKUP_KEEP  how many of the newest dumps to keep (default: 14); older ones are deleted
#
# The URL may be the app's own DATABASE_URL (postgresql+psycopg://). Give the password
# through PGPASSWORD or ~/.pgpass rather than in the URL, which `ps` shows. pg_dump must be
# of the server's major version or newer. The dump is written under a temporary name and
# checked with pg_restore --list before it counts: an interrupted or failed run never
# leaves a file that looks like a backup, and never prunes. Prints the new file's path.
set -euo pipefail

url="${1:-${DATABASE_URL:-}}"
if [[ -z "$url" ]]; then
  echo "usage: scripts/backup.sh [DATABASE_URL] (or set DATABASE_URL)" >&2
  exit 2
fi
url="${url/#postgresql+psycopg:\/\//postgresql://}"
dir="${BACKUP_DIR:-backups}"
keep="${BACKUP_KEEP:-14}"
if ! [[ "$keep" =~ ^[1-9][0-9]*$ ]]; then
  echo "BACKUP_KEEP must be a whole number of at least 1; got '$keep'" >&2
  exit 2
fi

mkdir -p "$dir"
backup="$dir/items-$(date -u +%Y%m%dT%H%M%S.%3NZ).dump"
partial="$backup.partial"
trap 'rm -f "$partial"' EXIT

pg_dump --format=custom --file="$partial" --dbname="$url"
pg_restore --list "$partial" >/dev/null
mv "$partial" "$backup"

# Newest first (the names sort by time); everything past the first $keep goes.
mapfile -t backups < <(find "$dir" -maxdepth 1 -name 'items-*.dump' -type f | LC_ALL=C sort -r)
for old in "${backups[@]:$keep}"; do
  rm -f -- "$old"
done
echo "$backup"
