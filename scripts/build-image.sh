#!/usr/bin/env bash
# Builds the pico image with buildah, offline: FROM scratch over the stripped static binaries
# that `make image-bins` puts in target/image/. Usage: scripts/build-image.sh [IMAGE]
# (default pico:<crate version>); `make image` runs both. With PICO_IMAGE_ARCHIVE=FILE it
# also writes the image as a docker-archive there, which `make kind-load` loads.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
image=${1:-pico:$version}
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
if [ -n "${PICO_IMAGE_ARCHIVE:-}" ]; then
  rm -f "$PICO_IMAGE_ARCHIVE"
  buildah push --quiet "$image" "docker-archive:$PICO_IMAGE_ARCHIVE:$image"
  echo "wrote $PICO_IMAGE_ARCHIVE"
fi
echo "built $image"
