#!/bin/sh
# Builds the .deb from the build tree (cpack -G DEB), installs it into the real
# system with dpkg -i, builds a consumer against /usr through find_package(mst)
# and through pkg-config, runs both (a save, read back and compared), checks the
# man pages and removes the package again (dpkg --purge mst). Root only: it changes
# the system (meant for a throwaway CI machine); as another user it exits 77
# (skipped). Fails, touching nothing, when a package mst or files of an
# unpackaged mst are already under /usr.
#   test_deb.sh BUILD_DIR SOURCE_DIR WORK_DIR
set -eu
build=$1 src=$2 work=$3
if [ "$(id -u)" != 0 ]; then
    echo "deb: needs root (installs a package into the system); skipped"
    exit 77
fi
fail() { echo "deb: FAIL: $*" >&2; exit 1; }
command -v dpkg >/dev/null || fail "dpkg not found: not a Debian system"
if dpkg-query -W -f '${Status}' mst 2>/dev/null | grep -q 'ok installed'; then
    fail "a package mst ($(dpkg-query -W -f '${Version}' mst)) is already installed; this test would \
replace and then remove it. Remove it first (dpkg -r mst) or run the test on a throwaway machine."
fi
for f in /usr/include/mst.h /usr/bin/mst-inspect /usr/lib/libmst.so.0 /usr/lib/*/libmst.so.0; do
    [ -e "$f" ] && fail "$f exists but belongs to no package (an earlier cmake --install \
--prefix /usr?); remove it first"
done

version=$(sed -n 's/^ *VERSION \([0-9.]*\)$/\1/p' "$src/CMakeLists.txt")
rm -rf "$work"
mkdir -p "$work/pkg" "$work/consumer"
(cd "$build" && cpack -G DEB -B "$work/pkg" >"$work/cpack.log" 2>&1) || { cat "$work/cpack.log"; fail "cpack -G DEB"; }
deb=$(ls "$work"/pkg/mst_*.deb)
test "$(dpkg-deb -f "$deb" Package)" = mst || fail "package name"
test "$(dpkg-deb -f "$deb" Version)" = "$version" || fail "package version"
depends=$(dpkg-deb -f "$deb" Depends)
echo "deb: $(basename "$deb"): Depends: $depends"
echo "$depends" | grep -q libcjson1 || fail "Depends lacks libcjson1"
echo "$depends" | grep -Eq 'libopenmpi3|libmpich12' || fail "Depends lacks the MPI library"
dpkg-deb -c "$deb" | grep -q ' \./usr/share/man/man1/mst-inspect\.1' || fail "no man page under /usr"
dpkg-deb -c "$deb" | grep -Eq ' \./usr/lib/([a-z0-9_-]+/)?libmst\.so\.0 ' || fail "no libmst under /usr/lib"

installed=0
cleanup() {
    if [ "$installed" = 1 ]; then
        dpkg --purge mst >"$work/remove.log" 2>&1 || { cat "$work/remove.log"; echo "deb: FAIL: dpkg --purge mst" >&2; exit 1; }
    fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM
dpkg -i "$deb" >"$work/install.log" 2>&1 || { cat "$work/install.log"; installed=1; fail "dpkg -i"; }
installed=1

# find_package(mst) from /usr, no CMAKE_PREFIX_PATH
cat > "$work/consumer/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.18)
project(consumer LANGUAGES C)
find_package(mst 0.1 REQUIRED)
if(NOT mst_DIR MATCHES "^/usr/lib/")
    message(FATAL_ERROR "mst found in ${mst_DIR}, not under /usr/lib")
endif()
add_executable(consumer save_example.c)
target_link_libraries(consumer PRIVATE mst::mst)
CM
cp "$src/examples/save_example.c" "$work/consumer/"
cmake -S "$work/consumer" -B "$work/consumer/build" -DMPI_C_COMPILER="${MST_MPICC:-mpicc}" \
    >"$work/consumer.log" 2>&1 \
    || { cat "$work/consumer.log"; fail "find_package(mst) consumer: configure"; }
cmake --build "$work/consumer/build" >>"$work/consumer.log" 2>&1 \
    || { cat "$work/consumer.log"; fail "find_package(mst) consumer: build"; }

# pkg-config from the default search path
test "$(pkg-config --modversion mst)" = "$version" || fail "pkg-config --modversion mst"
test "$(pkg-config --variable=mpi mst)" != "" || fail "the .pc file has no mpi variable"
libdir=$(pkg-config --variable=libdir mst)
test -e "$libdir/libmst.so.0" || fail "the .pc file's libdir $libdir holds no libmst.so.0"
test "$(cd "$libdir" && pwd -P)" = "$(cd "$(dirname "$(dpkg -L mst | grep '/libmst\.so\.0$')")" && pwd -P)" \
    || fail "the .pc file's libdir $libdir is not the package's"
"${MST_MPICC:-mpicc}" "$src/examples/save_example.c" -o "$work/consumer/pc_example" $(pkg-config --cflags --libs mst) \
    || fail "pkg-config consumer: build"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
over=""
mpiexec=${MPIEXEC:-mpiexec}  # the MPI of the build (CTest's environment)
"$mpiexec" --version 2>&1 | grep -q "Open MPI" && over=--oversubscribe
# a save from 2 ranks with each program, read back by the installed mst-inspect
env -u LD_LIBRARY_PATH "$mpiexec" -n 2 $over "$work/consumer/build/consumer" "$work/a.safetensors" \
    || fail "find_package(mst) consumer: run"
env -u LD_LIBRARY_PATH "$mpiexec" -n 2 $over "$work/consumer/pc_example" "$work/b.safetensors" \
    || fail "pkg-config consumer: run"
cmp "$work/a.safetensors" "$work/b.safetensors" || fail "the two consumers' files differ"
test "$(command -v mst-inspect)" = /usr/bin/mst-inspect || fail "mst-inspect is not /usr/bin/mst-inspect"
env -u LD_LIBRARY_PATH mst-inspect --check "$work/a.safetensors" || fail "mst-inspect --check"
env -u LD_LIBRARY_PATH mst-inspect "$work/a.safetensors" | grep -q "layers.1.bias" || fail "mst-inspect lists no layers.1.bias"
test "$(mst-inspect --version)" = "mst-inspect $version" || fail "mst-inspect --version"

# the man pages
for t in mst-inspect mst-merge mst-clean mst-bench; do
    page=$(man -w "$t") || fail "man -w $t finds no page"
    case $page in /usr/share/man/man1/*) ;; *) fail "man -w $t: $page, not under /usr/share/man" ;; esac
done

cleanup
installed=0
dpkg-query -W -f '${Status}' mst 2>/dev/null | grep -q 'ok installed' && fail "mst still installed after dpkg --purge"
test ! -e /usr/bin/mst-inspect || fail "/usr/bin/mst-inspect left after dpkg --purge"
echo "deb: $(basename "$deb") installs under /usr; find_package(mst) and pkg-config consumers build and run; man pages found; removed"
