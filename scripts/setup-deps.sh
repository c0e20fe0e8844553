#!/bin/sh
# Installs what mst needs to build and test, from Debian's packages (Debian 12).
# Idempotent: does nothing when everything is already there. Needs root (or sudo).
#   scripts/setup-deps.sh [--memcheck]   (--memcheck adds valgrind and clang)
set -eu
pkgs="build-essential cmake pkg-config libopenmpi-dev openmpi-bin libcjson-dev zlib1g-dev libisal-dev python3 python3-numpy python3-mpi4py python3-torch"
[ "${1:-}" = "--memcheck" ] && pkgs="$pkgs valgrind clang libclang-rt-14-dev"
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
echo "installing:$missing"
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends $missing
