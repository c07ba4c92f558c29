#!/bin/sh
# The deploy and rollback jobs of .gitlab-ci.yml: scripts/deploy.sh on the VM, over SSH.
#
#   deploy-over-ssh.sh deploy IMAGE_TAG   copy the stack files and deploy.sh to DEPLOY_PATH,
#                                         then run `deploy.sh IMAGE_TAG` there
#   deploy-over-ssh.sh rollback           run `deploy.sh --rollback` there (files unchanged)
#   deploy-over-ssh.sh status             run `deploy.sh --status` there
#
# CI/CD variables (protected, so only protected branches and tags see them):
#   SSH_PRIVATE_KEY  a File variable with the private key (a variable holding the key works too)
#   KNOWN_HOSTS      the VM's host key line(s), e.g. from `ssh-keyscan -t ed25519 HOST`
#   DEPLOY_HOST, DEPLOY_USER, DEPLOY_PATH; optional DEPLOY_PORT (default 22)
#   CI_DEPLOY_USER, CI_DEPLOY_PASSWORD: set by GitLab when the project has a deploy
#     token named gitlab-deploy-token (read_registry); the VM then logs in to
#     $CI_REGISTRY with it before pulling. Without one the VM must already be
#     logged in (docker/README.md).
# POSIX sh: the job image is Alpine's.
set -eu

log() { printf 'deploy-over-ssh: %s\n' "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}
usage() {
  sed -n '4,6p' "$0" >&2
  exit 2
}

action=${1:-}
tag=""
case $action in
  deploy)
    tag=${2:-}
    printf '%s' "$tag" | grep -Eq '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,58}$' || die "not a valid image tag: '$tag'"
    ;;
  rollback | status) ;;
  *) usage ;;
esac

for name in DEPLOY_HOST DEPLOY_USER DEPLOY_PATH SSH_PRIVATE_KEY KNOWN_HOSTS; do
  eval "value=\${$name:-}"
  [ -n "$value" ] || die "the CI/CD variable $name is not set (Settings > CI/CD > Variables)"
done
port=${DEPLOY_PORT:-22}
# These go into the remote command line: allow only what needs no quoting.
case $DEPLOY_PATH in
  /*) ;;
  *) die "DEPLOY_PATH must be an absolute path" ;;
esac
case $DEPLOY_PATH$DEPLOY_USER$DEPLOY_HOST$port in
  *[!A-Za-z0-9_./@:-]*) die "DEPLOY_PATH, DEPLOY_USER, DEPLOY_HOST and DEPLOY_PORT may contain only letters, digits and _ . / - @ :" ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umask 077
# A File variable holds a path; a plain one the text itself. CRs from a pasted
# key break OpenSSH, and so does a missing final newline.
from_variable() {
  if [ -f "$1" ]; then tr -d '\r' <"$1"; else printf '%s\n' "$1" | tr -d '\r'; fi
  echo
}
from_variable "$SSH_PRIVATE_KEY" >"$work/id"
from_variable "$KNOWN_HOSTS" >"$work/known_hosts"

remote() {
  ssh -F /dev/null -i "$work/id" -p "$port" \
    -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes \
    -o UserKnownHostsFile="$work/known_hosts" -o ConnectTimeout=15 -o ServerAliveInterval=15 \
    "$DEPLOY_USER@$DEPLOY_HOST" "$@"
}

case $action in
  deploy)
    if [ -n "${CI_DEPLOY_USER:-}" ] && [ -n "${CI_DEPLOY_PASSWORD:-}" ] && [ -n "${CI_REGISTRY:-}" ]; then
      case $CI_DEPLOY_USER$CI_REGISTRY in
        *[!A-Za-z0-9_.+:-]*) die "unexpected characters in CI_DEPLOY_USER or CI_REGISTRY" ;;
      esac
      printf '%s' "$CI_DEPLOY_PASSWORD" \
        | remote "docker login --username $CI_DEPLOY_USER --password-stdin $CI_REGISTRY >/dev/null" \
        || die "docker login to $CI_REGISTRY on $DEPLOY_HOST failed"
      log "$DEPLOY_HOST logged in to $CI_REGISTRY as $CI_DEPLOY_USER"
    fi
    # The compose stack as of this commit; the server's .env stays as it is.
    mkdir -p "$work/stack/observability"
    cp docker/docker-compose.prod.yml docker/Caddyfile scripts/deploy.sh "$work/stack/"
    cp -R docker/observability/prometheus.yml docker/observability/rules docker/observability/grafana \
      "$work/stack/observability/"
    tar -C "$work/stack" -cf - docker-compose.prod.yml Caddyfile deploy.sh observability \
      | remote "mkdir -p $DEPLOY_PATH && tar -xf - --no-same-owner -C $DEPLOY_PATH"
    log "copied the stack files to $DEPLOY_HOST:$DEPLOY_PATH"
    remote "cd $DEPLOY_PATH && bash ./deploy.sh $tag && bash ./deploy.sh --status"
    ;;
  rollback)
    remote "cd $DEPLOY_PATH && bash ./deploy.sh --rollback && bash ./deploy.sh --status"
    ;;
  status)
    remote "cd $DEPLOY_PATH && bash ./deploy.sh --status"
    ;;
esac
