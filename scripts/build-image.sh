#!/usr/bin/env bash
# Builds the pico image with buildah, offline: FROM scratch over the stripped static binaries
# that `make image-bins` puts in target/image/. Usage: scripts/build-image.sh [IMAGE]
# (default pico:latest); `make image` runs both.
set -euo pipefail
cd "$(dirname "$0")/.."
image=${1:-pico:latest}
bin_dir=target/image

for bin in pico-apiserver pico-agent; do
  if [ ! -x "$bin_dir/$bin" ]; then
    echo "$bin_dir/$bin is missing: run 'make image-bins' first" >&2
    exit 1
  fi
done
if ! command -v buildah >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "buildah is missing (Debian package buildah); install it or run as root" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends buildah >/dev/null
fi
# vfs and chroot work inside containers without overlayfs or user namespaces.
export STORAGE_DRIVER=${STORAGE_DRIVER:-vfs}
export BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}
buildah bud --quiet --layers=false --build-arg "BIN_DIR=$bin_dir" -f Dockerfile -t "$image" .
echo "built $image"
