#!/usr/bin/env bash
# The system-test tier: boots Debian VMs under qemu (TCG) with real systemd,
# a real kernel and real OpenSSH and runs the checks inside; each check's
# line comes back on the console and is reported here.
#
# Inside, guest-checks.sh sets the guest up (the quota disks, the portal's
# NIC) and runs the guest_checks binary (tests/src/bin/guest_checks.rs, its
# sections in tests/src/guest/, one file per subject), which runs every
# check, section by section in the order numbered, with each section's time
# (`info  section N took S s`). After the packages section it runs
# guest-install.sh (this build's module and slicectl, PAM wired for sshd).
# The JupyterHub checks stay in shell (jupyterhub-checks.sh, with
# guest-lib.sh's helpers); the binary runs them and relays their lines.
# Everything is staged on a read-only second disk (below).
#
#   tests/system/vm/run.sh [VARIANT...]     default: bookworm-v2 trixie-v2 bookworm-v1
#
# VARIANT is RELEASE-CGROUP: bookworm (systemd 252) or trixie (systemd 257),
# v2 (unified) or v1 (systemd.unified_cgroup_hierarchy=0; systemd 256+ has
# no v1, so trixie-v1 does not exist). The guests boot two at a time
# ($DIYCLOUD_VM_JOBS, default 2), the first two named first; each one's
# lines are printed when it ends. Images are built once and cached in
# $DIYCLOUD_VM_CACHE (default /var/cache/diycloud-vm). Each guest's console
# log is kept in target/vm/VARIANT-console.log. Needs root.
#
# One boot ($DIYCLOUD_PORTAL_VARIANT, default bookworm-v2) also runs the
# web portal's checks: its guest serves on a port forwarded to the host
# ($DIYCLOUD_PORTAL_PORT, default 18480), where tests/system/portal/
# host-checks.sh drives a browser and checks the history and /metrics; its
# lines join the guest's (log: target/vm/portal-host.log, screenshots:
# target/vm/portal/).
#
# One boot ($DIYCLOUD_JUPYTERHUB_VARIANT, default bookworm-v2, whose image
# has JupyterHub) also runs the JupyterHub checks (jupyterhub-checks.sh).
# DIYCLOUD_VM_ONLY=jupyterhub runs only those (and the install they need),
# with no package or portal checks: for working on them.
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
here="$root/tests/system/vm"
cache=${DIYCLOUD_VM_CACHE:-/var/cache/diycloud-vm}
logs="$root/target/vm"
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(bookworm-v2 trixie-v2 bookworm-v1)
[ "$(id -u)" = 0 ] || { echo "run.sh: needs root (debootstrap, images)" >&2; exit 1; }
# The guest kernel's extra command line of VARIANT; fails on an unknown
# one, which is refused here, before anything is built.
kernel_cmdline() {
    case "$1" in
        bookworm-v2|trixie-v2) echo "" ;;
        bookworm-v1) echo "systemd.unified_cgroup_hierarchy=0 SYSTEMD_CGROUP_ENABLE_LEGACY_FORCE=1" ;;
        *) echo "unknown variant $1" >&2; return 2 ;;
    esac
}
for variant in "${variants[@]}"; do kernel_cmdline "$variant" >/dev/null || exit 2; done

# Every tool, installed in one transaction (see tests/deps.sh for why).
"$root/tests/deps.sh" >/dev/null || { echo "run.sh: tests/deps.sh could not provide the tools" >&2; exit 1; }

cd "$root"
cargo build --release --locked --workspace
mkdir -p "$logs"
stage="$logs/stage"
rm -rf "$stage" && mkdir -p "$stage"
cp target/release/libpam_diycloud.so "$stage/pam_diycloud.so"
cp target/release/slicectl target/release/session_probe target/release/session_compare \
    target/release/cpu_burn target/release/guest_checks \
    "$here/guest-checks.sh" "$here/guest-install.sh" "$here/guest-lib.sh" "$stage/"
cp packaging/pam-configs/diycloud "$stage/pam-configs-diycloud"
# The schema this build migrates to: the number of its newest SQLite
# migration (the upgrade check expects it, whatever it is by then).
newest=$(basename "$(ls libdiycloud/src/store/sqlite/[0-9]*_*.sql | sort | tail -1)")
echo "$((10#${newest%%_*}))" >"$stage/schema-version"
cp -r packaging/jupyterhub "$stage/jupyterhub"
cp "$here/jupyterhub-checks.sh" "$here/jupyterhub_client.py" "$stage/"
# The images and the older build (prepare.sh: built once and kept; waits
# for a run that run-all.sh started in the background).
releases=$(printf '%s\n' "${variants[@]%-*}" | sort -u)
# shellcheck disable=SC2086 # one word per release
"$here/prepare.sh" $releases
# The packages for the package checks: this build's, and the older build's
# (the last commit with schema 4) for the upgrade.
packaging/build-packages.sh --no-build >/dev/null
cp target/packages/diycloud_*_"$(dpkg --print-architecture)".deb "$stage/diycloud-new.deb"
old="$logs/old-${DIYCLOUD_OLD_COMMIT:-7b4108d}"
[ -e "$old/packages/diycloud_0.0.9_$(dpkg --print-architecture).deb" ] ||
    packaging/build-packages.sh --binaries "$old/target/debug" --source "$old/src" \
        --version 0.0.9 --out "$old/packages" >/dev/null
cp "$old/packages/diycloud_0.0.9_$(dpkg --print-architecture).deb" "$stage/diycloud-old.deb"

# The boot that also runs the JupyterHub checks (its image has JupyterHub);
# DIYCLOUD_VM_ONLY=jupyterhub runs those alone.
jupyterhub_variant=${DIYCLOUD_JUPYTERHUB_VARIANT:-bookworm-v2}
only=${DIYCLOUD_VM_ONLY:-}
case "$only" in ""|jupyterhub) ;; *) echo "DIYCLOUD_VM_ONLY: only 'jupyterhub' is known" >&2; exit 2 ;; esac

# The boot that also runs the portal's checks, and its forwarded port.
portal_variant=${DIYCLOUD_PORTAL_VARIANT:-bookworm-v2}
portal_port=${DIYCLOUD_PORTAL_PORT:-18480}
portal_log="$logs/portal-host.log"
mkdir -p "$logs/portal"

# How long a guest may run before it is stopped. The checks bound each
# command they run; this bounds the whole. The Debian 12 cgroup v2 boot, the
# longest, ran 1,414 s on a 2-core host that other builds and a `yes` kept
# busy (its vCPUs got about a third of the machine): 900 s, the old limit,
# stopped it during JupyterHub. Alone on a quiet host it runs about 1,000 s;
# beside a second guest and two `yes` it gets a quarter of the host, hence
# an hour.
guest_limit=${DIYCLOUD_GUEST_LIMIT:-3600}

# How many guests run at once. A guest under TCG keeps about one host core
# busy (its checks run one command at a time), so on a 2-core host two side
# by side take little longer than one alone.
jobs=${DIYCLOUD_VM_JOBS:-2}
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || { echo "DIYCLOUD_VM_JOBS: a whole number from 1, not '$jobs'" >&2; exit 2; }

# One boot: VARIANT's guest, run to its end (a boot that panicked before
# any check is tried again, once). Writes what it reports to
# $logs/VARIANT.report and its counts to $logs/VARIANT.counts.
boot() {
    local variant=$1 release cgroup cmdline image console portal nic attempt work vstage start qemu results
    release=${variant%-*}
    cgroup=${variant##*-}
    cmdline=$(kernel_cmdline "$variant")
    image="$cache/$release"
    console="$logs/$variant-console.log"
    # One boot also runs the portal's checks: its guest serves on a port
    # forwarded to the host, where a browser, the history and /metrics
    # checks run (tests/system/portal/host-checks.sh).
    portal=""
    nic=()
    if [ "$variant" = "$portal_variant" ] && [ -z "$only" ]; then
        portal=yes
        nic=(-nic "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:$portal_port-10.0.2.15:8480")
    fi
    # This boot's stage: the shared one (hard links) and its markers.
    vstage="$logs/stage-$variant"
    rm -rf "$vstage" && cp -al "$stage" "$vstage"
    if [ -n "$portal" ]; then touch "$vstage/portal-browser"; fi
    if [ "$variant" = "$jupyterhub_variant" ]; then touch "$vstage/jupyterhub-boot"; fi
    if [ -n "$only" ]; then touch "$vstage/only-$only"; fi
    # Under TCG the guest kernel very rarely panics while booting (seen once
    # in the scheduler, 24 s in, before any check ran). Such a boot is tried
    # again, once: a panic after the checks began still fails.
    for attempt in 1 2; do
        work=$(mktemp -d)
        qemu-img create -q -f qcow2 -b "$image/root.img" -F raw "$work/root.qcow2"
        truncate -s 64M "$work/stage.img"
        mkfs.ext4 -q -F -d "$vstage" "$work/stage.img"
        # Blank (sparse) disks for the quota checks: ext4 and XFS (300M at least).
        truncate -s 512M "$work/quota-ext4.img" "$work/quota-xfs.img"
        # A console log of an earlier boot must not be read as this one's.
        rm -f "$console"
        echo "== $variant: booting ($release, cgroup $cgroup; console log: ${console#"$root"/})"
        start=$(date +%s)
        timeout "$guest_limit" qemu-system-x86_64 -accel tcg -m 2048 -smp 2 -nographic -no-reboot \
            -kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
            -drive "file=$work/root.qcow2,format=qcow2,if=virtio" \
            -drive "file=$work/stage.img,format=raw,if=virtio,readonly=on" \
            -drive "file=$work/quota-ext4.img,format=raw,if=virtio" \
            -drive "file=$work/quota-xfs.img,format=raw,if=virtio" \
            "${nic[@]}" \
            -append "console=ttyS0 root=/dev/vda rw quiet panic=-1 $cmdline" \
            -serial "file:$console" -monitor none -display none >/dev/null 2>&1 &
        qemu=$!
        if [ -n "$portal" ]; then
            : > "$portal_log"
            while kill -0 "$qemu" 2>/dev/null; do
                if [ -e "$console" ] && tr -d '\r' < "$console" | grep -aq 'DIYCLOUD PORTAL-READY'; then
                    "$root/tests/system/portal/host-checks.sh" "http://127.0.0.1:$portal_port" "$logs/portal" \
                        > "$portal_log" 2>&1 || true
                    break
                fi
                sleep 1
            done
        fi
        wait "$qemu" || true
        rm -rf "$work"
        if [ "$attempt" = 1 ] && grep -aq 'Kernel panic' "$console" && ! grep -aq 'DIYCLOUD ' "$console"; then
            cp "$console" "$console.panic"
            echo "   $variant: the guest kernel panicked while booting (kept in ${console#"$root"/}.panic); booting again"
            continue
        fi
        break
    done
    rm -rf "$vstage"
    # Lines may come after terminal escapes on the console: match anywhere.
    results=$(tr -d '\r' < "$console" | grep -ao 'DIYCLOUD .*' || true)
    if [ -n "$portal" ]; then
        host_results=$(grep -a '^DIYCLOUD \(PASS\|FAIL\)' "$portal_log" || true)
        [ -n "$host_results" ] || host_results="DIYCLOUD FAIL portal: the host's checks ran: expected results; saw none (see ${portal_log#"$root"/})"
        results=$(printf '%s\n%s' "$results" "$host_results")
    fi
    if ! echo "$results" | grep -q '^DIYCLOUD DONE'; then
        results=$(printf '%s\n%s' "$results" "DIYCLOUD FAIL $variant: the guest did not finish (see ${console#"$root"/})")
    fi
    {
        echo "== $variant: the guest ran $(( $(date +%s) - start )) s"
        echo "$results" | while read -r _ kind rest; do
            case "$kind" in
                PASS) echo "   pass  $rest" ;;
                FAIL) echo "   FAIL  $rest" ;;
                BENCH) echo "   bench $rest" ;;
                INFO) echo "   info  $rest" ;;
            esac
        done
    } > "$logs/$variant.report"
    printf '%s %s\n' "$(echo "$results" | grep -c '^DIYCLOUD PASS' || true)" \
        "$(echo "$results" | grep -c '^DIYCLOUD FAIL' || true)" > "$logs/$variant.counts"
}

# The boots, $jobs at a time, in the order given (the longest first, by
# default), each with its own console log, stage and report; each report is
# printed whole once its boot is over.
report() { # VARIANT
    cat "$logs/$1.report" 2>/dev/null || echo "   FAIL  $1: no report (see ${logs#"$root"/}/$1-console.log)"
}
declare -A pid_of=()
for variant in "${variants[@]}"; do
    rm -f "$logs/$variant.report" "$logs/$variant.counts"
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
    boot "$variant" &
    pid_of[$variant]=$!
done
passed=0
failed=0
for variant in "${variants[@]}"; do
    wait "${pid_of[$variant]}" || true
    report "$variant"
    read -r p f < "$logs/$variant.counts" 2>/dev/null || { p=0; f=1; }
    passed=$((passed + p))
    failed=$((failed + f))
done
echo "system: $passed passed, $failed failed"
[ "$failed" = 0 ]
