#!/bin/bash
# Stand-in for sumina46/wait-for-it as gitlab-ci-local calls it, on the job's
# service network: `HOST:PORT -t SECONDS`. Exits 0 once HOST:PORT accepts TCP
# connections and the pipeline check has published the port on 127.0.0.1 (it
# creates /tmp/forwarded in this container), so a shell-executor job never
# starts before its services are reachable from the host's loopback.
set -uo pipefail
target=${1:?usage: wait-for-it HOST:PORT [-t SECONDS]}
shift
timeout=30
while [ $# -gt 0 ]; do
  case $1 in
    -t) timeout=${2:-30}; shift 2 ;;
    *) shift ;;
  esac
done
host=${target%:*}
port=${target##*:}
deadline=$((SECONDS + timeout))
until [ -e /tmp/forwarded ] && (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; do
  if ((SECONDS >= deadline)); then
    echo "wait-for-it: $target not ready (or not forwarded) within ${timeout}s" >&2
    exit 1
  fi
  sleep 0.2
done
echo "wait-for-it: $target is up"
