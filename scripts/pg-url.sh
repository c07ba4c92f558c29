# Sourced by backup.sh and restore.sh: turn a database URL into one pg_dump/pg_restore
# may see on their command line. Sets PG_URL (no password) and exports PGPASSWORD.
#
# The URL's password moves into the environment, which only this user (and root) can read
# (/proc/<pid>/environ); a command line is visible to every user in `ps`. The app's
# postgresql+psycopg:// scheme is accepted too.

# pg_url_from URL
pg_url_from() {
  local url=${1/#postgresql+psycopg:\/\//postgresql://}
  # scheme://user:password@rest — a password in a URL is percent-encoded.
  if [[ "$url" =~ ^(postgres(ql)?://)([^:@/]*):([^@/]*)@(.*)$ ]]; then
    local encoded=${BASH_REMATCH[4]}
    PGPASSWORD=$(printf '%b' "${encoded//%/\\x}")
    export PGPASSWORD
    url="${BASH_REMATCH[1]}${BASH_REMATCH[3]}@${BASH_REMATCH[5]}"
  fi
  PG_URL=$url
}

# A URL given as an argument is already on this script's command line: refuse one with a password.
pg_refuse_password_argument() {
  if [[ "$1" =~ ^[a-z+]+://[^:@/]*:[^@/]*@ ]]; then
    echo "a password in a command-line argument is visible in ps: set DATABASE_URL (or PGPASSWORD/~/.pgpass) instead" >&2
    exit 2
  fi
}
