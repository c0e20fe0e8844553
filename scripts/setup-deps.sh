#!/bin/sh
# Installs what mst needs to build and test, from Debian's packages (Debian 12).
# Idempotent: does nothing when everything is already there. Needs root (or sudo).
#   scripts/setup-deps.sh [--memcheck] [--mpi mpich] [--cluster]
#     --memcheck    adds valgrind and clang
#     --mpi mpich   adds Debian's MPICH (libmpich-dev, mpich) beside Open MPI
#     --cluster     adds slurm-wlm, munge and iproute2 (the slurm.* and multihost.*
#                   tests, run as root, start their own daemons and namespaces)
set -eu
pkgs="build-essential cmake pkg-config libopenmpi-dev openmpi-bin libcjson-dev zlib1g-dev libisal-dev python3 python3-numpy python3-mpi4py python3-torch"
while [ $# -gt 0 ]; do
    case "$1" in
        --memcheck) pkgs="$pkgs valgrind clang libclang-rt-14-dev"; shift ;;
        --mpi)
            case "${2:-}" in
                mpich) pkgs="$pkgs libmpich-dev mpich" ;;
                openmpi) ;;
                *) echo "setup-deps.sh: --mpi openmpi|mpich" >&2; exit 2 ;;
            esac
            shift 2 ;;
        --cluster) pkgs="$pkgs slurm-wlm munge iproute2"; shift ;;
        *) echo "usage: setup-deps.sh [--memcheck] [--mpi mpich] [--cluster]" >&2; exit 2 ;;
    esac
done
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
