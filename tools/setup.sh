#!/usr/bin/env bash
# Installs the Debian 12 (bookworm) packages ldmc needs to build and test,
# only those missing, quietly. Safe to run again: with everything present it
# touches nothing and prints one line.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  llvm-19-dev clang-19 libclang-rt-19-dev libomp-19-dev
  libprotobuf-c-dev protobuf-c-compiler
  libzstd-dev libjansson-dev libpng-dev zlib1g-dev libcairo2-dev
  dataset-fashion-mnist
  python3-torch python3-numpy libopenblas-dev
  liblapacke-dev liblapack-dev python3-scipy
  libopenmpi-dev openmpi-bin
)

missing=()
for p in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$status" = installed ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO=sudo; else
    echo "setup: missing ${missing[*]}; run as root (or install sudo)" >&2
    exit 1
  fi
fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
