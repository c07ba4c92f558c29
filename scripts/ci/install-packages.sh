#!/bin/sh
# Install the Debian packages a CI job needs, only those that are missing.
#
#   install-packages.sh PACKAGE[:COMMAND_OR_PATH]...
#
# A package counts as present when COMMAND_OR_PATH (default: a command named
# like the package) is on PATH or is an existing file. The python slim image
# has no `make`, and the test suite drives pgbouncer, openssl and the
# PostgreSQL server binaries (initdb) for real; on a machine that has them
# (or a shell runner) this installs nothing.
set -eu

missing=""
for spec in "$@"; do
  package=${spec%%:*}
  check=${spec#*:}
  case $check in
    /*) [ -e "$check" ] && continue ;;
    *) command -v "$check" >/dev/null 2>&1 && continue ;;
  esac
  missing="$missing $package"
done

if [ -z "$missing" ]; then
  echo "install-packages: all present: $*"
  exit 0
fi
echo "install-packages: apt-get install$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086 # a list of package names
apt-get install -y -qq --no-install-recommends $missing >/dev/null
