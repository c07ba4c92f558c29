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
CT_CADDY_IMAGE=caddy:2.10.2-alpine
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
          ct_standins; cat /usr/local/share/ca-certificates/*.crt 2>/dev/null) | sha256sum | cut -c1-16)
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
  # --network host: the engine has no default bridge; apt reaches the mirror.
  docker build -q --network host -t "$tag" "$ctx" >/dev/null || rc=1
  rm -rf "$ctx"
  [ $rc -eq 0 ] || ct_die "stand-in $tag failed to build"
}
