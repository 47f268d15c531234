#!/usr/bin/env bash
# Installs what hyper needs to build, test and run its demo, from Debian's packages. Idempotent:
# nothing is fetched when everything is already there.
set -euo pipefail

packages=(
  cmake ninja-build g++ pkg-config git
  libyaml-cpp-dev nlohmann-json3-dev libvalijson-dev libre2-dev libsqlite3-dev libsodium-dev libcli11-dev
  libgtest-dev libgmock-dev
  libgit2-dev libspdlog-dev libcpp-httplib-dev libssl-dev libnftables-dev libjemalloc-dev
  iproute2 nftables iputils-ping clang-format openssl curl
  qemu-system-x86 busybox-static cpio make kmod mmdebstrap erofs-utils gpg libdpkg-perl
  openssh-server openssh-client
  chromium fonts-dejavu-core
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "hyper: missing packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "hyper: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
