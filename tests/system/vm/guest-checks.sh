#!/bin/bash
# Runs inside the test VM as root (from diycloud-checks.service, which the
# image starts at boot): sets the guest up, then runs every check with the
# guest_checks binary (tests/src/guest/), whose DIYCLOUD lines the host
# (run.sh) reads from the console. Shell here is setup only: files into
# place, PAM wired, disks made. A check belongs in the binary.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
stage=/stage

# The stock common-* files, before anything edits them: the profile section
# restores them and lets pam-auth-update write the shipped profile into them.
mkdir -p /root/pam.d.orig
cp -a /etc/pam.d/common-auth /etc/pam.d/common-account /etc/pam.d/common-password \
    /etc/pam.d/common-session /etc/pam.d/common-session-noninteractive /root/pam.d.orig/

# man-db rebuilds its whole index at every install and removal (a dpkg
# trigger), which takes long under emulation; `man PAGE` finds the pages
# without it. The packages section installs and removes four times.
echo 'man-db man-db/auto-update boolean false' | debconf-set-selections

# The quota disks (blank, from run.sh): ext4 with the quota feature and XFS;
# the quota section mounts them on /home (usrquota) and /srv/scratch (uquota).
mkfs.ext4 -q -F -O quota -E quotatype=usrquota /dev/vdc
mkfs.xfs -q -f /dev/vdd

# The portal's boot: qemu forwards a host port to 10.0.2.15:8480. udev may
# still be renaming the NIC (eth0 -> enp0s...) this early.
if [ -e "$stage/portal-browser" ]; then
    udevadm settle --timeout=30 2>/dev/null
    nic=$(for d in /sys/class/net/*; do [ -e "$d/device" ] && basename "$d"; done | head -1)
    ip link set "$nic" up && ip addr add 10.0.2.15/24 dev "$nic"
    for _ in $(seq 50); do
        [ "$(cat "/sys/class/net/$nic/operstate" 2>/dev/null)" = up ] && break
        sleep 0.1
    done
    echo "DIYCLOUD INFO portal: network $(ip -br addr show dev "$nic" 2>&1 | tr -s ' ')"
fi

# Every two minutes, what uses the guest's CPU most: where a slow section
# spends its time shows on the console.
(
    while sleep 120; do
        echo "DIYCLOUD INFO busiest: $(ps -eo pcpu=,etimes=,args= --sort=-pcpu | head -4 | cut -c1-100 | tr -s ' ' | tr '\n' '|')"
    done
) &
# The binary runs the packages section first, on this clean guest, then
# guest-install.sh (this build's module and slicectl, PAM wired for sshd),
# then every other section.
exec "$stage/guest_checks" "$stage"
