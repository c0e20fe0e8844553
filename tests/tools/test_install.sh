#!/bin/sh
# Installs the build into a scratch prefix and builds the example against it,
# once through find_package(mst) and once through pkg-config, then runs both.
#   test_install.sh BUILD_DIR SOURCE_DIR WORK_DIR
set -eu
build=$1 src=$2 work=$3
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
cmake -S "$work/consumer" -B "$work/consumer/build" -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/consumer/build" >/dev/null

libdir=$(ls -d "$work"/prefix/lib*/ | head -n 1)
PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --exists mst
test "$(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --modversion mst)" = "$(sed -n 's/^ *VERSION \([0-9.]*\)$/\1/p' "$src/CMakeLists.txt")"
mpicc "$src/examples/save_example.c" -o "$work/consumer/pc_example" \
    $(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags --libs mst) -Wl,-rpath,"$libdir"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpiexec -n 2 --oversubscribe "$work/consumer/build/consumer" "$work/a.safetensors"
mpiexec -n 2 --oversubscribe "$work/consumer/pc_example" "$work/b.safetensors"
cmp "$work/a.safetensors" "$work/b.safetensors"
"$work/prefix/bin/mst-inspect" --check "$work/a.safetensors"
echo "install: find_package(mst) and pkg-config both build and run"
