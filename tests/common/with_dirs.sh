#!/bin/sh
# Runs a test command with special directories prepared in WORKDIR:
#   with_dirs.sh WORKDIR [--need-full|--want-full] -- COMMAND...
# WORKDIR/ro    a directory no one can write: a read-only tmpfs when we may
#               mount (root ignores permission bits), else mode 0555;
#               exported as MST_TEST_RO_DIR when one could be made.
# WORKDIR/full  with --need-full: a 1 MiB tmpfs, to fill for real. It needs
#               root; without it the test is skipped (exit 77).
#               With --want-full: mounted when we may, else the command runs
#               without it (and skips its full-disk part itself).
set -u
work=$1
shift
need_full=0
want_full=0
if [ "$1" = "--need-full" ]; then need_full=1; shift; fi
if [ "$1" = "--want-full" ]; then want_full=1; shift; fi
[ "$1" = "--" ] && shift

mounted=""
cleanup() {
    for m in $mounted; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM
cleanup
mkdir -p "$work/ro"
if [ "$(id -u)" = 0 ]; then
    if mount -t tmpfs -o ro,size=64k tmpfs "$work/ro" 2>/dev/null; then
        mounted="$work/ro"
        export MST_TEST_RO_DIR="$work/ro"
    fi
else
    chmod 0555 "$work/ro" && export MST_TEST_RO_DIR="$work/ro"
fi
if [ $need_full = 1 ]; then
    mkdir -p "$work/full"
    if [ "$(id -u)" != 0 ] || ! mount -t tmpfs -o size=1m tmpfs "$work/full" 2>/dev/null; then
        echo "SKIPPED: a real full disk needs root to mount a 1 MiB tmpfs"
        exit 77
    fi
    mounted="$mounted $work/full"
elif [ $want_full = 1 ] && [ "$(id -u)" = 0 ]; then
    mkdir -p "$work/full"
    mount -t tmpfs -o size=1m tmpfs "$work/full" 2>/dev/null && mounted="$mounted $work/full"
fi
"$@"
rc=$?
[ -n "${MST_TEST_RO_DIR:-}" ] && [ "$(id -u)" != 0 ] && chmod 0755 "$work/ro"
exit $rc
