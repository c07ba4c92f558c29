#!/usr/bin/env bash
# Checks docker/observability with promtool: the Prometheus config, the alert rules,
# and the rules' unit tests (each alert fires when it should and only then).
# promtool comes from Debian's "prometheus" package, installed here if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=docker/observability

if ! command -v promtool >/dev/null; then
  echo "installing promtool (Debian package: prometheus)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
promtool --version 2>&1 | head -n1

promtool check config "$dir/prometheus.yml"
promtool check rules "$dir"/rules/*.yml
promtool test rules "$dir"/tests/*.yml
