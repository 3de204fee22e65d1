#!/bin/bash
# A Debian minbase root filesystem to install the bundle into (tests/nodes): built once with
# debootstrap, then cached under $AHD_ROOTS (default /var/tmp/ahd-roots)/<release>, with a
# stamp written last: a half-built root (interrupted, no network) is rebuilt, never used.
#   hack/node-root.sh bullseye   ->  prints the root's path
set -euo pipefail
release=${1:?usage: node-root.sh RELEASE}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
base=${AHD_ROOTS:-/var/tmp/ahd-roots}
root=$base/$release
if [ ! -e "$root/.ahd-complete" ]; then
  mkdir -p "$base"
  rm -rf "$root" "$root.tmp"
  debootstrap --variant=minbase "$release" "$root.tmp" "$mirror" >"$base/$release.log" 2>&1 \
    || { echo "debootstrap $release failed: see $base/$release.log" >&2; rm -rf "$root.tmp"; exit 1; }
  mv "$root.tmp" "$root"
  date -u +%FT%TZ >"$root/.ahd-complete"
fi
echo "$root"
