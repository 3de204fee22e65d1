#!/bin/sh
# A local Debian bookworm base image (no registry is needed): debootstrap --variant=minbase,
# imported into podman. Cached: an existing image is reused unless REBUILD=1.
set -eu
IMAGE=${BASE_IMAGE:-localhost/amd-host-device-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
export CONTAINERS_CONF="${CONTAINERS_CONF:-$(cd "$(dirname "$0")" && pwd)/containers.conf}"

if [ "${REBUILD:-0}" != 1 ] && podman image exists "$IMAGE"; then
  echo "base image $IMAGE: cached"
  exit 0
fi
root=$(mktemp -d /var/tmp/ahd-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "base image $IMAGE: debootstrap bookworm (minbase) from $MIRROR"
debootstrap --variant=minbase bookworm "$root" "$MIRROR" > "$root.log" 2>&1 || {
  tail -20 "$root.log"; rm -f "$root.log"; exit 1; }
rm -f "$root.log"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | podman import --quiet - "$IMAGE" >/dev/null
echo "base image $IMAGE: built"
