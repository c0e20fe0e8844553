# Sourced by the other scripts: mpirun as root needs these two, and the
# 2-core machines run 3- and 4-rank jobs oversubscribed.
# MST_MPI (openmpi, the default, or mpich: Debian's libmpich-dev) picks the MPI
# to build against; each has its own build directory (build/, build-mpich/)
# unless MST_BUILD says otherwise. MST_MPI_CMAKE holds the configure options
# that select it.
if [ "$(id -u)" = 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export OMPI_MCA_rmaps_base_oversubscribe=1
MST_ROOT=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
MST_MPI=${MST_MPI:-openmpi}
case "$MST_MPI" in
    openmpi)
        MST_MPI_CMAKE=""
        MST_BUILD=${MST_BUILD:-$MST_ROOT/build} ;;
    mpich)
        MST_MPI_CMAKE="-DMPI_C_COMPILER=mpicc.mpich -DMPIEXEC_EXECUTABLE=/usr/bin/mpiexec.mpich"
        MST_BUILD=${MST_BUILD:-$MST_ROOT/build-mpich} ;;
    *)
        echo "unknown MPI '$MST_MPI' (openmpi or mpich)" >&2
        exit 2 ;;
esac
export MST_MPI
JOBS=$(nproc 2>/dev/null || echo 2)
