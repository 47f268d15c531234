#!/usr/bin/env bash
# Obtains Debian's guest kernel for hyper's VMs without installing it on the host: the package that
# linux-image-amd64 points to is downloaded (apt-get download) into a cache directory and unpacked
# there with dpkg-deb -x. Prints the directory, which then holds:
#   vmlinuz                   the kernel image
#   lib/modules/<version>/    that kernel's modules, with modules.dep
#   modules                   a symlink to lib/modules/<version>
#   version                   the kernel version, one line
# Usage: scripts/guest-kernel.sh [DEST]   (DEST defaults to $HYPER_GUEST_CACHE or
# /var/cache/hyper/guest). Idempotent: nothing is fetched when DEST already holds the kernel.
set -euo pipefail

dest=${1:-${HYPER_GUEST_CACHE:-/var/cache/hyper/guest}}

if [ -s "$dest/vmlinuz" ] && [ -s "$dest/version" ] && [ -d "$dest/modules/kernel" ]; then
  echo "$dest"
  exit 0
fi

for tool in apt-cache apt-get dpkg-deb; do
  if ! command -v "$tool" >/dev/null; then
    echo "hyper: guest-kernel: $tool not found (a Debian host is needed)" >&2
    exit 1
  fi
done

# linux-image-amd64 is a metapackage; its dependency names the versioned image package.
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n1)
if [ -z "$pkg" ]; then
  echo "hyper: guest-kernel: apt-cache does not know linux-image-amd64; updating the package lists" >&2
  apt-get update -qq
  pkg=$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n1)
fi
if [ -z "$pkg" ]; then
  echo "hyper: guest-kernel: cannot find the package behind linux-image-amd64" >&2
  exit 1
fi

mkdir -p "$dest/deb"
cd "$dest/deb"
if ! ls "${pkg}"_*.deb >/dev/null 2>&1; then
  # The lists may be stale (the versioned package was superseded): update once and retry.
  if ! apt-get download "$pkg" >/dev/null 2>&1; then
    echo "hyper: guest-kernel: apt-get download $pkg failed; updating the package lists" >&2
    apt-get update -qq
    apt-get download "$pkg" >/dev/null
  fi
fi
deb=$(ls "${pkg}"_*.deb | head -n1)

# Unpack into a temporary directory and move into place, so an interrupted run leaves no half tree.
tmp=$(mktemp -d "$dest/unpack.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "$deb" "$tmp/root"
version=$(ls "$tmp/root/lib/modules" | head -n1)
if [ -z "$version" ] || [ ! -f "$tmp/root/boot/vmlinuz-$version" ]; then
  echo "hyper: guest-kernel: $deb has no boot/vmlinuz-<version> and lib/modules/<version>" >&2
  exit 1
fi
# Debian ships modules.dep only via depmod at install time; generate it for the unpacked tree.
if [ ! -s "$tmp/root/lib/modules/$version/modules.dep" ]; then
  depmod -b "$tmp/root" "$version"
fi
rm -rf "$dest/lib" "$dest/vmlinuz"
mkdir -p "$dest/lib/modules"
mv "$tmp/root/lib/modules/$version" "$dest/lib/modules/$version"
mv "$tmp/root/boot/vmlinuz-$version" "$dest/vmlinuz"
ln -sfn "lib/modules/$version" "$dest/modules"
# Written last: its presence (with the two above) is what marks the cache complete.
echo "$version" >"$dest/version"
echo "$dest"
