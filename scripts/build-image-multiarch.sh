#!/usr/bin/env bash
# Builds the pico image for several architectures (default amd64 and arm64) as one manifest
# list with buildah, and writes it as an OCI archive (target/image/pico-multiarch.tar) that a
# registry push (`buildah manifest push --all IMAGE docker://REGISTRY/pico:TAG`) or
# `skopeo copy --all` takes. Usage: scripts/build-image-multiarch.sh [IMAGE]
#
# Each architecture needs static binaries built for it, which needs (Debian names):
#   - the Rust target: `rustup target add aarch64-unknown-linux-gnu` (or x86_64-…);
#   - for a target other than the host: a cross C compiler and binutils, since aws-lc-rs
#     compiles C and the static link needs that libc: gcc-aarch64-linux-gnu,
#     binutils-aarch64-linux-gnu (x86-64-linux-gnu ones on an arm64 host).
# Nothing runs for the foreign architecture (the image is FROM scratch), so no qemu.
# PICO_ARCHES="amd64 arm64" picks the architectures; PICO_SKIP_BUILD=1 packs binaries already
# in $PICO_IMAGE_BIN_ROOT/<arch>/ (default target/image; it must lie under target/image).
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
image=${1:-pico:$version}
archive=${PICO_MULTIARCH_ARCHIVE:-target/image/pico-multiarch.tar}
arches=${PICO_ARCHES:-amd64 arm64}
host=$(rustc -vV | sed -n 's/^host: //p')
bin_root=${PICO_IMAGE_BIN_ROOT:-target/image}

triple_of() {
  case $1 in
    amd64) echo x86_64-unknown-linux-gnu ;;
    arm64) echo aarch64-unknown-linux-gnu ;;
    *) echo "unsupported architecture $1 (amd64, arm64)" >&2; exit 1 ;;
  esac
}

build() {
  local arch=$1 triple prefix env_triple
  triple=$(triple_of "$arch")
  prefix=${triple%%-unknown-*}-linux-gnu
  if ! rustup target list --installed 2>/dev/null | grep -qx "$triple"; then
    echo "$arch: the Rust target is missing: rustup target add $triple" >&2
    exit 1
  fi
  local strip=strip
  if [ "$triple" != "$host" ]; then
    for tool in "$prefix-gcc" "$prefix-strip"; do
      command -v "$tool" >/dev/null || {
        echo "$arch: $tool is missing (Debian packages gcc-$prefix binutils-$prefix)" >&2
        exit 1
      }
    done
    env_triple=$(echo "$triple" | tr 'a-z-' 'A-Z_')
    export "CARGO_TARGET_${env_triple}_LINKER=$prefix-gcc" "CC_${triple//-/_}=$prefix-gcc"
    strip=$prefix-strip
  fi
  RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --target "$triple" \
    --bin pico-apiserver --bin pico-agent
  mkdir -p "$bin_root/$arch"
  for bin in pico-apiserver pico-agent; do
    "$strip" -o "$bin_root/$arch/$bin" "target/$triple/release/$bin"
  done
}

for arch in $arches; do
  triple_of "$arch" >/dev/null
  [ -n "${PICO_SKIP_BUILD:-}" ] || build "$arch"
  for bin in pico-apiserver pico-agent; do
    [ -x "$bin_root/$arch/$bin" ] || { echo "$bin_root/$arch/$bin is missing" >&2; exit 1; }
  done
done
command -v buildah >/dev/null || { echo "buildah is missing (Debian package buildah)" >&2; exit 1; }
export STORAGE_DRIVER=${STORAGE_DRIVER:-vfs}
export BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}
buildah manifest rm "$image" >/dev/null 2>&1 || true
buildah rmi "$image" >/dev/null 2>&1 || true
buildah manifest create "$image" >/dev/null
for arch in $arches; do
  buildah bud --quiet --layers=false --os linux --arch "$arch" --manifest "$image" \
    --build-arg "BIN_DIR=$bin_root/$arch" -f Dockerfile .
done
rm -f "$archive"
buildah manifest push --quiet --all "$image" "oci-archive:$archive:$image"
echo "wrote $archive ($arches)"
