#!/usr/bin/env bash
# Deploy the Items API on the VM by image tag (the commit SHA CI pushed), or roll back.
#
#   ./deploy.sh IMAGE_TAG     pull, migrate (one-shot), up -d --wait, check /health, record the tag
#   ./deploy.sh --rollback    return to the tag that was running before the current one
#   ./deploy.sh --status      the running tag, the previous one and the history
#
# Runs in DEPLOY_PATH (default: the current directory), which holds
# docker-compose.prod.yml, Caddyfile, observability/ and the server's .env
# (docker/README.md). The deploy job of .gitlab-ci.yml copies the files there
# and runs this script over SSH; it works the same by hand on the server.
# The running tag is in .deploy/current (history: .deploy/history). Other
# compose commands by hand need it too, or compose takes IMAGE_TAG from .env:
#   IMAGE_TAG=$(cat .deploy/current) docker compose -f docker-compose.prod.yml ps
#
# Rollback never downgrades the schema: the previous image runs against the
# schema the newer one migrated to. That is safe only while every migration is
# backward compatible (expand now, contract in a later release). A tag that was
# deployed here before skips its migration (its revisions are already applied,
# and an older image's Alembic would not know the newer head), so re-running an
# old pipeline's deploy job is a rollback too.
#
# Settings (environment): DEPLOY_PATH; MIGRATE=auto|always|never (auto: skip
# for a tag deployed here before); HEALTH_URL (default from .env: DOMAIN,
# HTTP_PORT, HTTPS_PORT, PUBLISH_IP); HEALTH_TIMEOUT (60 s); WAIT_TIMEOUT (180 s,
# for `up --wait`) and RESTORE_WAIT_TIMEOUT (180 s, when going back after a
# failure); PULL_SERVICES ("api migrate": the third-party images are pinned in
# the compose file and pulled by `up` when missing).
set -euo pipefail

DEPLOY_PATH=${DEPLOY_PATH:-$PWD}
COMPOSE_FILE_NAME=${COMPOSE_FILE_NAME:-docker-compose.prod.yml}
MIGRATE=${MIGRATE:-auto}
HEALTH_TIMEOUT=${HEALTH_TIMEOUT:-60}
WAIT_TIMEOUT=${WAIT_TIMEOUT:-180}
RESTORE_WAIT_TIMEOUT=${RESTORE_WAIT_TIMEOUT:-180}
PULL_SERVICES=${PULL_SERVICES:-api migrate}
STATE_DIR=.deploy
HISTORY=$STATE_DIR/history

log() { printf 'deploy: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

usage() {
  sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

compose() { docker compose -f "$COMPOSE_FILE_NAME" "$@"; }

# A Docker tag: what CI pushes ($CI_COMMIT_SHA, a release tag).
valid_tag() { [[ $1 =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]]; }

# The value of NAME: from the environment if set there, else the last NAME=
# line of .env (compose gives the environment precedence the same way).
setting() {
  local name=$1 default=${2:-} value
  if [[ -n ${!name+x} ]]; then
    printf '%s' "${!name}"
    return
  fi
  value=$(sed -n "s/^[[:space:]]*${name}=//p" .env 2>/dev/null | tail -n 1)
  value=${value%\"}
  value=${value#\"}
  value=${value%\'}
  value=${value#\'}
  printf '%s' "${value:-$default}"
}

# The deployment stack, replayed from the history: a deploy pushes its tag
# (unless it is already on top), a rollback pops one. Prints it, oldest first.
tag_stack() {
  [[ -f $HISTORY ]] || return 0
  awk '$2 == "deploy" { if (n == 0 || s[n] != $3) s[++n] = $3; next }
       $2 == "rollback" { if (n > 1) n--; next }
       END { for (i = 1; i <= n; i++) print s[i] }' "$HISTORY"
}
current_tag() { tag_stack | tail -n 1; }
previous_tag() { tag_stack | awk '{ previous = current; current = $0 } END { print previous }'; }
deployed_before() { [[ -f $HISTORY ]] && awk -v t="$1" '$3 == t { found = 1 } END { exit !found }' "$HISTORY"; }

# .env is not edited: every service that reads it as env_file (PostgreSQL too)
# would be recreated by the next `up` whenever IMAGE_TAG in it changed.
record() {
  printf '%s %s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$1" "$2" >>"$HISTORY"
  printf '%s\n' "$2" >"$STATE_DIR/current"
}

health_check() {
  local url domain port args=() deadline status=""
  url=$(setting HEALTH_URL)
  if [[ -z $url ]]; then
    domain=$(setting DOMAIN)
    if [[ -n $domain ]]; then
      # Through the proxy on this host, with the real certificate and host name.
      port=$(setting HTTPS_PORT 443)
      url="https://$domain:$port/health"
      args=(--resolve "$domain:$port:127.0.0.1")
    else
      port=$(setting HTTP_PORT 80)
      url="http://$(setting PUBLISH_IP 127.0.0.1):$port/health"
    fi
  fi
  deadline=$((SECONDS + HEALTH_TIMEOUT))
  while ((SECONDS < deadline)); do
    status=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 "${args[@]}" "$url" 2>/dev/null) || status=000
    if [[ $status == 200 ]]; then
      log "$url answered 200"
      return 0
    fi
    sleep 2
  done
  log "$url did not answer 200 within ${HEALTH_TIMEOUT}s (last status $status)"
  return 1
}

# Every service of the active profiles but the one-shot migration.
long_running_services() { compose config --services | grep -vx migrate; }

# up -d --wait with IMAGE_TAG=$1; "skip-migration" starts the services without
# the migrate dependency (an older image's Alembic fails on a newer schema).
switch_to() {
  local tag=$1 mode=${2:-}
  if [[ $mode == skip-migration ]]; then
    # shellcheck disable=SC2046 # one service name per line
    IMAGE_TAG=$tag compose up -d --wait --wait-timeout "$WAIT_TIMEOUT" --no-deps $(long_running_services)
  else
    IMAGE_TAG=$tag compose up -d --wait --wait-timeout "$WAIT_TIMEOUT"
  fi
}

# After a failed switch: back to the version that was running, if any.
restore() {
  local tag=$1
  [[ -n $tag ]] || { log "nothing was running before: not restoring"; return 1; }
  log "restoring $tag"
  if WAIT_TIMEOUT=$RESTORE_WAIT_TIMEOUT switch_to "$tag" skip-migration && health_check; then
    log "restored $tag; it is serving again"
  else
    log "restoring $tag failed too: check 'docker compose -f $COMPOSE_FILE_NAME ps' and the logs"
  fi
}

deploy() {
  local tag=$1 action=$2 running migrate
  running=$(current_tag)
  log "$action $tag (running: ${running:-nothing})"

  log "pulling $PULL_SERVICES"
  # shellcheck disable=SC2086 # a list of service names
  IMAGE_TAG=$tag compose pull --quiet $PULL_SERVICES || die "pull of $tag failed; nothing was changed"

  case $MIGRATE in
    always) migrate=yes ;;
    never) migrate=no ;;
    auto) if deployed_before "$tag"; then migrate=no; else migrate=yes; fi ;;
    *) die "MIGRATE must be auto, always or never" ;;
  esac
  if [[ $migrate == yes ]]; then
    log "migrating the schema with $tag"
    IMAGE_TAG=$tag compose run --rm --quiet-pull migrate \
      || die "the migration of $tag failed; the running version (${running:-none}) was not touched"
  else
    log "not migrating: $tag was deployed here before (its revisions are applied)"
  fi

  if switch_to "$tag" "$([[ $migrate == yes ]] || echo skip-migration)" && health_check; then
    record "$action" "$tag"
    log "$tag is live"
    return 0
  fi
  log "$tag did not become healthy"
  if [[ $running != "$tag" ]]; then restore "$running" || true; fi
  return 1
}

status() {
  echo "running:  $(current_tag)"
  echo "previous: $(previous_tag)"
  echo "history (last 10):"
  tail -n 10 "$HISTORY" 2>/dev/null | sed 's/^/  /'
  compose ps
}

main() {
  [[ $# -eq 1 ]] || usage
  cd "$DEPLOY_PATH" || die "no directory $DEPLOY_PATH"
  [[ -f $COMPOSE_FILE_NAME ]] || die "$DEPLOY_PATH/$COMPOSE_FILE_NAME is missing"
  [[ -f .env ]] || die "$DEPLOY_PATH/.env is missing (copy .env.prod.example, fill it in, chmod 600)"
  mkdir -p "$STATE_DIR"
  # One deployment at a time on this server.
  exec 9>"$STATE_DIR/lock"
  flock -w 600 9 || die "another deployment holds $DEPLOY_PATH/$STATE_DIR/lock"

  case $1 in
    --status) status ;;
    --rollback)
      local target
      target=$(previous_tag)
      [[ -n $target ]] || die "no earlier deployment recorded in $DEPLOY_PATH/$HISTORY"
      deploy "$target" rollback
      ;;
    -h | --help) usage ;;
    -*) usage ;;
    *)
      valid_tag "$1" || die "not a valid image tag: $1"
      deploy "$1" deploy
      ;;
  esac
}

main "$@"
