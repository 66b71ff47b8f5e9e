#!/bin/bash
# Installs what the build needs (Debian packages), configures and builds pose into ./build.
# Used by the README's first command and by .ci/run. Re-running is cheap: apt and cmake skip what is done.
set -euo pipefail
cd "$(dirname "$0")/.."
PKGS="build-essential cmake pkg-config liblua5.4-dev lua5.4 libhdf5-dev hdf5-tools libopenblas-openmp-dev
      libcjson-dev libsentencepiece-dev sentencepiece libpcre2-dev zlib1g-dev"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "setup: installing$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
cmake -B build -S . -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
echo "setup: built ./build/pose ($(./build/pose version))"
