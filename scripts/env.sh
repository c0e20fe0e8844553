# Sourced by the other scripts: mpirun as root needs these two, and the
# 2-core machines run 3- and 4-rank jobs oversubscribed.
if [ "$(id -u)" = 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export OMPI_MCA_rmaps_base_oversubscribe=1
MST_ROOT=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
MST_BUILD=${MST_BUILD:-$MST_ROOT/build}
JOBS=$(nproc 2>/dev/null || echo 2)
