#!/bin/sh
# Installs the build into a scratch prefix and builds the example against it,
# once through find_package(mst) and once through pkg-config, then runs both
# (the pkg-config one without LD_LIBRARY_PATH: the .pc file carries the rpath).
#   test_install.sh BUILD_DIR SOURCE_DIR WORK_DIR
set -eu
build=$1 src=$2 work=$3
# the MPI of the build (CTest's environment): its mpicc, mpiexec and mpiexec options
mpicc=${MST_MPICC:-mpicc} mpiexec=${MPIEXEC:-mpiexec} flags=${MST_MPIEXEC_FLAGS---oversubscribe}
rm -rf "$work"
mkdir -p "$work/consumer"
cmake --install "$build" --prefix "$work/prefix" >/dev/null

cat > "$work/consumer/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.18)
project(consumer LANGUAGES C)
find_package(mst 0.1 REQUIRED)
add_executable(consumer save_example.c)
target_link_libraries(consumer PRIVATE mst::mst)
CM
cp "$src/examples/save_example.c" "$work/consumer/"
cmake -S "$work/consumer" -B "$work/consumer/build" -DCMAKE_PREFIX_PATH="$work/prefix" \
    -DMPI_C_COMPILER="$mpicc" >/dev/null
cmake --build "$work/consumer/build" >/dev/null

libdir=$(ls -d "$work"/prefix/lib*/ | head -n 1)
PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --exists mst
test "$(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --modversion mst)" = "$(sed -n 's/^ *VERSION \([0-9.]*\)$/\1/p' "$src/CMakeLists.txt")"
"$mpicc" "$src/examples/save_example.c" -o "$work/consumer/pc_example" \
    $(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags --libs mst)

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
"$mpiexec" -n 2 $flags "$work/consumer/build/consumer" "$work/a.safetensors"
# the .pc file's rpath finds libmst, not LD_LIBRARY_PATH
env -u LD_LIBRARY_PATH "$mpiexec" -n 2 $flags "$work/consumer/pc_example" "$work/b.safetensors"
cmp "$work/a.safetensors" "$work/b.safetensors"
"$work/prefix/bin/mst-inspect" --check "$work/a.safetensors"

# A reader-only program: <mst_reader.h> alone, plain cc, no MPI include path
# (and the header must not pull in mpi.h from anywhere).
cat > "$work/consumer/reader_only.c" <<'C'
#include <mst_reader.h>
#include <stdio.h>
#if defined(MPI_VERSION) || defined(OMPI_MPI_H) || defined(MPI_INCLUDED)
#error "mst_reader.h included mpi.h"
#endif
int main(int argc, char **argv)
{
    mst_reader *r = NULL;
    mst_tensor_info t;
    unsigned char bias[16];
    int rc = argc == 2 ? mst_reader_open(&r, argv[1]) : MST_ERR_INVALID_ARGUMENT;
    if (rc == MST_OK)
        rc = mst_reader_find(r, "layers.1.bias", &t);
    if (rc == MST_OK && (t.dtype != MST_BF16 || mst_dtype_bits(t.dtype) != 16 || t.end - t.begin != 16))
        rc = MST_ERR_FORMAT;
    if (rc == MST_OK)
        rc = mst_reader_read(r, "layers.1.bias", 0, bias, sizeof bias);
    for (int i = 0; rc == MST_OK && i < 16; i += 2)
        if (bias[i] != 0x80 || bias[i + 1] != 0x3f)
            rc = MST_ERR_FORMAT;
    if (rc != MST_OK) {
        fprintf(stderr, "reader_only: %s: %s\n", mst_strerror(rc), r ? mst_reader_error(r) : "");
        mst_reader_free(&r);
        return 1;
    }
    printf("reader_only: %zu tensors, mst %s\n", mst_reader_count(r), mst_version_string());
    mst_reader_free(&r);
    return 0;
}
C
${CC:-cc} -std=c11 -Wall -Werror -I"$work/prefix/include" "$work/consumer/reader_only.c" \
    -o "$work/consumer/reader_only" -L"$libdir" -lmst -Wl,-rpath,"$libdir"
test "$("$work/consumer/reader_only" "$work/a.safetensors")" = "reader_only: 4 tensors, mst $(sed -n 's/^ *VERSION \([0-9.]*\)$/\1/p' "$src/CMakeLists.txt")"
echo "install: find_package(mst) and pkg-config both build and run; a reader-only program builds without MPI"
