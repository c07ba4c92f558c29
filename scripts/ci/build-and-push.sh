#!/bin/sh
# Build the image and push it to the GitLab Container Registry: the `build` job
# of .gitlab-ci.yml. POSIX sh, because the docker:<version>-cli image has no bash.
#
#   $CI_REGISTRY_IMAGE:$CI_COMMIT_SHA   always (immutable: what deploy.sh deploys)
#   $CI_REGISTRY_IMAGE:latest           on the default branch
#   $CI_REGISTRY_IMAGE:$CI_COMMIT_TAG   on a tag
#
# A commit is built once: when its SHA tag is already in the registry (a tag
# pipeline after the default branch's, a retried job) that image is re-tagged,
# not rebuilt; FORCE_REBUILD=1 rebuilds it anyway.
#
# Cache: the previous `latest` and the `builder` stage of the previous
# default-branch build ($BUILD_CACHE_IMAGE:builder) are pulled when they exist
# and passed as --cache-from. That works with the classic builder (which
# matches pulled images by their history) and with BuildKit (the images carry
# inline cache metadata: BUILDKIT_INLINE_CACHE=1). The builder stage needs its
# own image because only the final stage's layers are in `latest`.
#
# Needs: CI_REGISTRY, CI_REGISTRY_USER, CI_REGISTRY_PASSWORD, CI_REGISTRY_IMAGE,
# CI_COMMIT_SHA (GitLab sets them all); optional CI_COMMIT_TAG,
# CI_COMMIT_BRANCH, CI_DEFAULT_BRANCH, CI_PROJECT_URL. DOCKER_BUILD_OPTS adds
# options to both builds (e.g. "--network host" on an engine without a
# default bridge).
set -eu

log() { printf 'build-and-push: %s\n' "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

for name in CI_REGISTRY CI_REGISTRY_USER CI_REGISTRY_PASSWORD CI_REGISTRY_IMAGE CI_COMMIT_SHA; do
  eval "value=\${$name:-}"
  [ -n "$value" ] || die "$name is not set"
done

image=$CI_REGISTRY_IMAGE
cache_image=${BUILD_CACHE_IMAGE:-$CI_REGISTRY_IMAGE/build-cache}
sha=$CI_COMMIT_SHA
# The app refuses to start with a GIT_SHA that is not a commit hash.
case $sha in
  *[!0-9a-f]* | "") die "CI_COMMIT_SHA is not a lowercase hex commit hash: $sha" ;;
esac
[ ${#sha} -eq 40 ] || die "CI_COMMIT_SHA must have 40 hex digits: $sha"
release_tag=${CI_COMMIT_TAG:-}
if [ -n "$release_tag" ]; then
  # Docker's tag grammar; a Git tag such as "release/1.0" is not a valid one.
  printf '%s' "$release_tag" | grep -Eq '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$' \
    || die "tag '$release_tag' is not a valid Docker tag (letters, digits, _ . -)"
fi
on_default_branch=no
if [ -n "${CI_COMMIT_BRANCH:-}" ] && [ "${CI_COMMIT_BRANCH:-}" = "${CI_DEFAULT_BRANCH:-}" ]; then
  on_default_branch=yes
fi

# The dind service needs a moment after the job starts (TLS certificates).
tries=0
until docker info >/dev/null 2>&1; do
  tries=$((tries + 1))
  [ "$tries" -lt 30 ] || die "no Docker daemon answers at ${DOCKER_HOST:-the default socket}"
  sleep 1
done

# The password goes through stdin, never the command line; logged out on exit.
printf '%s' "$CI_REGISTRY_PASSWORD" \
  | docker login --username "$CI_REGISTRY_USER" --password-stdin "$CI_REGISTRY" >/dev/null \
  || die "docker login to $CI_REGISTRY as $CI_REGISTRY_USER failed"
trap 'docker logout "$CI_REGISTRY" >/dev/null 2>&1 || true' EXIT
log "logged in to $CI_REGISTRY as $CI_REGISTRY_USER"

built=no
if [ "${FORCE_REBUILD:-}" != 1 ] && docker pull --quiet "$image:$sha" >/dev/null 2>&1; then
  # A commit's image is built once: a tag pipeline (or a retried job) for a
  # commit the default branch already built promotes that exact image, and
  # the SHA tag never changes content under a deployment.
  log "$image:$sha is already in the registry: not rebuilding it (FORCE_REBUILD=1 would)"
else
  cache_from=""
  for ref in "$cache_image:builder" "$image:latest"; do
    if docker pull --quiet "$ref" >/dev/null 2>&1; then
      cache_from="$cache_from --cache-from $ref"
      log "cache: $ref"
    else
      log "cache: $ref not found (first build?)"
    fi
  done

  started=$(date +%s)
  # shellcheck disable=SC2086 # DOCKER_BUILD_OPTS and cache_from are option lists
  docker build ${DOCKER_BUILD_OPTS:-} $cache_from \
    --build-arg BUILDKIT_INLINE_CACHE=1 \
    --target builder --tag "$cache_image:builder" .

  set -- --build-arg GIT_SHA="$sha"
  [ -z "$release_tag" ] || set -- "$@" --build-arg VERSION="$release_tag"
  [ -z "${CI_PROJECT_URL:-}" ] || set -- "$@" --build-arg SOURCE_URL="$CI_PROJECT_URL"
  # shellcheck disable=SC2086
  docker build ${DOCKER_BUILD_OPTS:-} $cache_from --cache-from "$cache_image:builder" \
    --build-arg BUILDKIT_INLINE_CACHE=1 "$@" \
    --tag "$image:$sha" .
  log "built $image:$sha in $(($(date +%s) - started)) s"

  docker push --quiet "$image:$sha"
  log "pushed $image:$sha"
  built=yes
fi
if [ -n "$release_tag" ]; then
  docker tag "$image:$sha" "$image:$release_tag"
  docker push --quiet "$image:$release_tag"
  log "pushed $image:$release_tag"
fi
if [ "$on_default_branch" = yes ]; then
  docker tag "$image:$sha" "$image:latest"
  docker push --quiet "$image:latest"
  log "pushed $image:latest"
  if [ "$built" = yes ]; then
    docker push --quiet "$cache_image:builder"
    log "pushed $cache_image:builder"
  fi
fi
