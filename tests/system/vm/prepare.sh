#!/usr/bin/env bash
# What the VM tier needs before its first boot, built once and kept:
#   prepare.sh RELEASE...
# the images of RELEASE... (build-image.sh, in $DIYCLOUD_VM_CACHE, default
# /var/cache/diycloud-vm) and the binaries of an older build for the
# package upgrade check ($DIYCLOUD_OLD_COMMIT, default 7b4108d, the last
# with schema 4; in target/vm/old-COMMIT). The parts run side by side: the
# images wait on the network and dpkg, the older build on the CPU.
#
# run.sh calls it; tests/run-all.sh also starts it in the background at its
# beginning, so that this work overlaps the tiers that time nothing. Each
# part holds a lock: a second run waits for the first and finds it done.
# Needs root.
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
here="$root/tests/system/vm"
cache=${DIYCLOUD_VM_CACHE:-/var/cache/diycloud-vm}
old_commit=${DIYCLOUD_OLD_COMMIT:-7b4108d}
old="$root/target/vm/old-$old_commit"
mkdir -p "$cache" "$root/target/vm"

images() {
    local release pids=() failed=0
    for release in "$@"; do
        flock "$cache/.$release.lock" "$here/build-image.sh" "$release" "$cache" &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    return "$failed"
}

old_build() {
    exec 9>"$root/target/vm/.old-$old_commit.lock"
    flock 9
    [ -e "$old/target/debug/slicectl" ] && [ -e "$old/target/debug/libpam_diycloud.so" ] && return 0
    echo "== building the older binaries ($old_commit) for the package upgrade check"
    rm -rf "$old" && mkdir -p "$old/src"
    git -C "$root" archive "$old_commit" | tar -x -C "$old/src"
    # A debug build without debug information: the upgrade check needs the
    # older build's behaviour, not its speed (its argon2 is optimized even
    # so, by its own profile), and this compile shares the CPU with the
    # tiers before the benchmarks: 89 s of CPU against 231 s for a release
    # build without LTO.
    CARGO_PROFILE_DEV_DEBUG=0 CARGO_TARGET_DIR="$old/target" cargo build --locked --quiet \
        --manifest-path "$old/src/Cargo.toml" -p pam_diycloud -p slicectl
}

images "$@" &
images_pid=$!
old_build &
old_pid=$!
status=0
wait "$images_pid" || { echo "prepare.sh: an image could not be built" >&2; status=1; }
wait "$old_pid" || { echo "prepare.sh: the older build ($old_commit) failed" >&2; status=1; }
exit "$status"
