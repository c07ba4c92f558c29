#!/usr/bin/env bash
# Deploy the Items API on the VM by image tag (the commit SHA CI pushed), or roll back.
#
#   ./deploy.sh IMAGE_TAG     pull, migrate (one-shot), roll the api containers, check /health, record the tag
#   ./deploy.sh --rollback    return to the tag that was running before the current one
#   ./deploy.sh --status      the running tag, the previous one, what is in rotation and the history
#
# Runs in DEPLOY_PATH (default: the current directory), which holds
# docker-compose.prod.yml, Caddyfile, observability/ and the server's .env
# (docker/README.md). The deploy job of .gitlab-ci.yml copies the files there
# and runs this script over SSH; it works the same by hand on the server.
# The running tag is in .deploy/current (history: .deploy/history). Other
# compose commands by hand need it too, or compose takes IMAGE_TAG from .env:
#   IMAGE_TAG=$(cat .deploy/current) docker compose -f docker-compose.prod.yml ps
#
# Rolling, not recreating: the new release's api containers start beside the
# running ones (EXPECTED_REPLICAS of them); each must answer /health/ready on
# the proxy's network; only then does the proxy send them requests. The proxy
# (docker/Caddyfile) sends requests to the DNS name in rotation/upstream:
# "api" (every api container) between deploys, "api-<tag>" (the alias of one
# release's containers) during one. The switch is one atomic rename of that
# file: old out, new in. Then the old containers, which no longer get new
# requests, finish those in flight, drain and stop (SIGTERM), and are removed.
# A release whose containers never get ready never gets a request: they are
# removed and the running release serves on, untouched. Old and new run side by
# side for a moment: the database connection budget must hold for twice
# EXPECTED_REPLICAS (checked before anything changes, when DB_MAX_CONNECTIONS is set).
#
# Rollback never downgrades the schema: the previous image runs against the
# schema the newer one migrated to. That is safe only while every migration is
# backward compatible (expand now, contract in a later release). The same holds
# during every deploy: the running release serves on the new schema until the
# switch. A tag that was deployed here before skips its migration (its
# revisions are already applied, and an older image's Alembic would not know
# the newer head), so re-running an old pipeline's deploy job is a rollback too.
#
# Settings (environment): DEPLOY_PATH; MIGRATE=auto|always|never (auto: skip
# for a tag deployed here before); HEALTH_URL (default from .env: DOMAIN,
# HTTP_PORT, HTTPS_PORT, PUBLISH_IP); HEALTH_TIMEOUT (60 s); WAIT_TIMEOUT (180 s:
# how long new containers may take to get ready, and for `up --wait` on a first
# deploy); PULL_SERVICES ("api migrate"; empty: no pull, the images are
# already here; the third-party images are pinned in the compose file and
# pulled by `up` when missing).
set -euo pipefail

DEPLOY_PATH=${DEPLOY_PATH:-$PWD}
COMPOSE_FILE_NAME=${COMPOSE_FILE_NAME:-docker-compose.prod.yml}
MIGRATE=${MIGRATE:-auto}
HEALTH_TIMEOUT=${HEALTH_TIMEOUT:-60}
WAIT_TIMEOUT=${WAIT_TIMEOUT:-180}
PULL_SERVICES=${PULL_SERVICES-api migrate}
STATE_DIR=.deploy
HISTORY=$STATE_DIR/history
ROTATION_DIR=rotation
ROTATION=$ROTATION_DIR/upstream
# Every api container answers to this name (the compose service).
ALL_REPLICAS=api

log() { printf 'deploy: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

usage() {
  sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

compose() { docker compose -f "$COMPOSE_FILE_NAME" "$@"; }

# A Docker tag: what CI pushes ($CI_COMMIT_SHA, a release tag). It also names
# the release's DNS alias, api-<tag>: one DNS label, at most 63 characters.
valid_tag() { [[ $1 =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,58}$ ]]; }

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
# (unless it is already on top), a rollback pops one; other lines (failed
# attempts) change nothing. Prints it, oldest first.
tag_stack() {
  [[ -f $HISTORY ]] || return 0
  awk '$2 == "deploy" { if (n == 0 || s[n] != $3) s[++n] = $3; next }
       $2 == "rollback" { if (n > 1) n--; next }
       END { for (i = 1; i <= n; i++) print s[i] }' "$HISTORY"
}
current_tag() { tag_stack | tail -n 1; }
previous_tag() { tag_stack | awk '{ previous = current; current = $0 } END { print previous }'; }
deployed_before() {
  [[ -f $HISTORY ]] && awk -v t="$1" '($2 == "deploy" || $2 == "rollback") && $3 == t { found = 1 } END { exit !found }' "$HISTORY"
}

# .env is not edited: every service that reads it as env_file (PostgreSQL too)
# would be recreated by the next `up` whenever IMAGE_TAG in it changed.
# record ACTION TAG [NOTE...]
record() {
  local action=$1 tag=$2
  shift 2
  printf '%s %s %s%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$action" "$tag" "${*:+ $*}" >>"$HISTORY"
  [[ $action == deploy || $action == rollback ]] && printf '%s\n' "$tag" >"$STATE_DIR/current"
  return 0
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

# --- the proxy's rotation ------------------------------------------------------

# set_rotation NAME: the proxy sends every request after this to the
# containers NAME resolves to (Caddy reads the file per request). Atomic.
set_rotation() {
  # Checked step by step: roll runs where `set -e` does not apply (a `||` list), and a
  # rotation file that names nothing would send requests to containers not yet ready.
  { mkdir -p "$ROTATION_DIR" && printf '%s\n' "$1" >"$ROTATION.tmp" && mv -f "$ROTATION.tmp" "$ROTATION"; } \
    || { log "ERROR: cannot write $DEPLOY_PATH/$ROTATION"; return 1; }
  log "in rotation: $1"
}
rotation() { cat "$ROTATION" 2>/dev/null || echo "$ALL_REPLICAS (no $ROTATION: the proxy's fallback)"; }
release_alias() { printf 'api-%s' "$1"; }

# The api containers of the project (ids), running or not.
api_containers() { compose ps -a -q api; }
container_name() { docker inspect -f '{{.Name}}' "$1" | sed 's#^/##'; }
has_alias() {
  docker inspect -f '{{range .NetworkSettings.Networks}}{{range .Aliases}}{{println .}}{{end}}{{end}}' "$1" \
    | grep -qxF "$2"
}

# /health/ready of one container, asked from the proxy's container over the
# network the proxy sends requests on (busybox wget is in the official image).
ready() {
  local proxy
  proxy=$(compose ps -q proxy | head -n 1)
  [[ -n $proxy ]] || return 1
  # No wget -T: it crashes in some busybox builds; timeout(1) bounds it instead.
  docker exec "$proxy" timeout 5 wget -q -O /dev/null "http://$(container_name "$1"):8000/health/ready" >/dev/null 2>&1
}

# remove_containers REASON ID...: SIGTERM (the app drains, the server finishes
# what is in flight), then remove; all at once.
remove_containers() {
  local reason=$1
  shift
  (($#)) || return 0
  log "stopping and removing $# container(s) ($reason): $(for id in "$@"; do container_name "$id"; done | tr '\n' ' ')"
  docker stop "$@" >/dev/null
  docker rm "$@" >/dev/null
}

# The connection budget with old and new replicas side by side (README
# "Connection budget"): the same sum the app checks at start-up, for twice the
# replicas. Unchecked, like the app, when DB_MAX_CONNECTIONS is not set.
check_budget() {
  local replicas=$1 max reserved workers pool overflow need
  max=$(setting DB_MAX_CONNECTIONS 0)
  [[ $max =~ ^[0-9]+$ ]] && ((max > 0)) || return 0
  reserved=$(setting DB_RESERVED_CONNECTIONS 10)
  workers=$(setting WEB_CONCURRENCY 2)
  pool=$(setting DB_POOL_SIZE 5)
  overflow=$(setting DB_MAX_OVERFLOW 5)
  need=$((2 * replicas * workers * (pool + overflow)))
  if ((need > max - reserved)); then
    die "old and new replicas side by side may open 2 x $replicas x $workers x ($pool + $overflow) = $need database connections > DB_MAX_CONNECTIONS - DB_RESERVED_CONNECTIONS = $((max - reserved)); lower DB_POOL_SIZE/DB_MAX_OVERFLOW or raise DB_MAX_CONNECTIONS (nothing was changed)"
  fi
  log "connection budget during the overlap: $need of $((max - reserved))"
}

# --- switching ----------------------------------------------------------------

# First start (nothing runs yet), or the running tag again: compose's own
# up --wait (it recreates what changed); the rotation is every api container.
start_stack() {
  local tag=$1 mode=${2:-} services
  set_rotation "$ALL_REPLICAS"
  if [[ $mode == skip-migration ]]; then
    services=$(compose config --services | grep -vx migrate | tr '\n' ' ')
    # shellcheck disable=SC2086 # a list of service names
    IMAGE_TAG=$tag compose up -d --wait --wait-timeout "$WAIT_TIMEOUT" --no-deps $services
  else
    IMAGE_TAG=$tag compose up -d --wait --wait-timeout "$WAIT_TIMEOUT"
  fi
}

# Before a roll: the proxy, the database, Redis, ... as the compose file and
# .env say now (a no-op unless they changed; a changed proxy is recreated, so
# it reads the rotation file before the api containers roll).
others_up() {
  local tag=$1 services
  services=$(compose config --services | grep -vx -e migrate -e api | tr '\n' ' ')
  [[ -n $services ]] || return 0
  # shellcheck disable=SC2086 # a list of service names
  IMAGE_TAG=$tag compose up -d --wait --wait-timeout "$WAIT_TIMEOUT" --no-deps $services >/dev/null \
    || die "bringing up $services failed (compose's reason above); the api containers were not touched"
}

# roll NEW RUNNING: new containers beside the old, ready, switch, drain the old.
roll() {
  local tag=$1 running=$2 replicas old=() leftover=() new=() id pending deadline started=$SECONDS
  replicas=$(setting EXPECTED_REPLICAS 1)
  for id in $(api_containers); do
    if has_alias "$id" "$(release_alias "$running")"; then old+=("$id"); else leftover+=("$id"); fi
  done
  if ((${#old[@]} == 0)); then
    # Containers without the api-<tag> alias (started by an older compose
    # file) cannot be narrowed to in the proxy: recreate this once.
    log "no api container carries the alias $(release_alias "$running"): recreating this once instead of rolling"
    return 2
  fi
  # Only the running release in rotation: new containers stay out until ready.
  set_rotation "$(release_alias "$running")" || return 1
  # Containers of another release, left by an interrupted deploy: now out of rotation.
  ((${#leftover[@]} == 0)) || remove_containers "left by an interrupted deploy" "${leftover[@]}" || return 1
  log "starting $replicas api container(s) of $tag beside ${#old[@]} of $running"
  IMAGE_TAG=$tag compose up -d --no-deps --no-recreate --scale "api=$((${#old[@]} + replicas))" api >/dev/null 2>&1 \
    || log "compose up of $tag's containers failed"
  mapfile -t new < <(api_containers | grep -vxF -f <(printf '%s\n' "${old[@]}") || true)
  if ((${#new[@]} == 0)); then
    set_rotation "$ALL_REPLICAS"
    log "no container of $tag was created; $running kept serving"
    return 1
  fi
  deadline=$((SECONDS + WAIT_TIMEOUT))
  pending=("${new[@]}")
  while ((${#pending[@]})) && ((SECONDS < deadline)); do
    local still=()
    for id in "${pending[@]}"; do
      if ready "$id"; then
        log "$(container_name "$id") ($tag) is ready after $((SECONDS - started)) s"
      else
        still+=("$id")
      fi
    done
    pending=("${still[@]}")
    ((${#pending[@]} == 0)) || sleep 1
  done
  if ((${#pending[@]})); then
    log "$tag never became ready within ${WAIT_TIMEOUT}s ($(for id in "${pending[@]}"; do container_name "$id"; done | tr '\n' ' ')did not answer /health/ready with 200); it never received a request"
    remove_containers "$tag, never ready" "${new[@]}"
    set_rotation "$ALL_REPLICAS"
    log "restored $running as the only release in rotation (it kept serving throughout)"
    return 1
  fi
  # The switch: one rename. Requests from now on go to the new containers.
  if ! set_rotation "$(release_alias "$tag")"; then
    remove_containers "$tag, not switched to" "${new[@]}"
    return 1
  fi
  if ! health_check; then
    set_rotation "$(release_alias "$running")"
    remove_containers "$tag, unhealthy through the proxy" "${new[@]}"
    set_rotation "$ALL_REPLICAS"
    log "restored $running as the only release in rotation"
    return 3
  fi
  # The new release is live: say so before the old containers go, so an interrupted
  # script leaves a history that names what serves.
  ROLL_NOTE="rolled $replicas replica(s) from ${running} in $((SECONDS - started)) s"
  record "$ACTION" "$tag" "$ROLL_NOTE"
  # The old containers get no new request now; stopping them drains what is in flight.
  remove_containers "$running, out of rotation" "${old[@]}" || return 4
  set_rotation "$ALL_REPLICAS" || return 4
  return 0
}

# restore RUNNING: after a failed recreate, the version that ran before, as it was.
restore() {
  log "putting $1 back"
  if start_stack "$1" skip-migration && health_check; then
    log "$1 is serving again"
  else
    log "ERROR: $1 did not become healthy either; see \`docker compose ps\` and the api's logs"
  fi
}

deploy() {
  local tag=$1 action=$2 running migrate rc replicas
  running=$(current_tag)
  replicas=$(setting EXPECTED_REPLICAS 1)
  log "$action $tag (running: ${running:-nothing})"
  [[ $replicas =~ ^[1-9][0-9]*$ ]] || die "EXPECTED_REPLICAS must be a positive number, not '$replicas'"

  if [[ -n $PULL_SERVICES ]]; then
    log "pulling $PULL_SERVICES"
    # shellcheck disable=SC2086 # a list of service names
    IMAGE_TAG=$tag compose pull --quiet $PULL_SERVICES || die "pull of $tag failed; nothing was changed"
  fi
  check_budget "$replicas"

  case $MIGRATE in
    always) migrate=yes ;;
    never) migrate=no ;;
    auto) if deployed_before "$tag"; then migrate=no; else migrate=yes; fi ;;
    *) die "MIGRATE must be auto, always or never" ;;
  esac
  if [[ $migrate == yes ]]; then
    log "migrating the schema with $tag"
    if ! IMAGE_TAG=$tag compose run --rm --quiet-pull migrate; then
      record failed "$tag" "($action: its migration failed; ${running:-nothing} untouched)"
      die "the migration of $tag failed; the running version (${running:-none}) was not touched"
    fi
  else
    log "not migrating: $tag was deployed here before (its revisions are applied)"
  fi

  ROLL_NOTE=""
  ACTION=$action
  if [[ -n $running && $running != "$tag" && -n $(api_containers) ]]; then
    others_up "$tag"
    rc=0
    roll "$tag" "$running" || rc=$?
    if ((rc == 1)); then
      record failed "$tag" "($action: never ready; $running kept serving)"
      die "$tag did not become ready; $running kept serving and nothing was switched"
    fi
    if ((rc == 3)); then
      record failed "$tag" "($action: unhealthy through the proxy; switched back to $running)"
      die "$tag was ready but $(setting HEALTH_URL 'the proxy') did not answer; switched back to $running"
    fi
    if ((rc == 4)); then
      die "$tag is live, but removing $running's containers or resetting the rotation failed; run the deploy of $tag again"
    fi
    if ((rc == 2)); then
      if ! start_stack "$tag" "$([[ $migrate == yes ]] || echo skip-migration)" || ! health_check; then
        record failed "$tag" "($action: unhealthy after the recreate; $running put back)"
        restore "$running"
        die "$tag did not become healthy after the recreate; $running was put back"
      fi
      ROLL_NOTE="recreated (containers without release aliases)"
    fi
  else
    if ! start_stack "$tag" "$([[ $migrate == yes ]] || echo skip-migration)" || ! health_check; then
      record failed "$tag" "($action: did not become healthy)"
      die "$tag did not become healthy"
    fi
    ROLL_NOTE="started"
  fi
  [[ $ROLL_NOTE == rolled* ]] || record "$action" "$tag" "$ROLL_NOTE"
  log "$tag is live ($ROLL_NOTE)"
}

status() {
  echo "running:  $(current_tag)"
  echo "previous: $(previous_tag)"
  echo "rotation: $(rotation)"
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
  # The proxy's rotation file exists before anything starts (compose mounts its directory).
  [[ -f $ROTATION ]] || set_rotation "$ALL_REPLICAS" >/dev/null 2>&1 || die "cannot write $DEPLOY_PATH/$ROTATION"

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
      valid_tag "$1" || die "not a valid image tag (letters, digits, _ . -, at most 59 characters): $1"
      deploy "$1" deploy
      ;;
  esac
}

main "$@"
