#!/usr/bin/env bash
# Builds (once, then cached) a bootable Debian image for the system tests:
#   build-image.sh RELEASE CACHE_DIR     RELEASE: bookworm (systemd 252) | trixie (systemd 257)
# Leaves CACHE_DIR/RELEASE/{root.img,vmlinuz,initrd.img}. The rootfs is a
# debootstrap minbase with systemd, sshd, sshpass and the kernel; a unit runs
# /stage/guest-checks.sh from the second disk at boot and powers off. The
# quota tools (quota, xfsprogs) are in for the disk quota checks, which make
# their own filesystems on the blank third and fourth disks; man-db and
# bash-completion for the package checks (the manual pages and completion);
# no package lists (the guest installs only the packages staged for it).
# The bookworm image also has JupyterHub for its checks: Debian's
# configurable-http-proxy, and JupyterHub, SystemdSpawner and Jupyter Server
# installed into /opt/jupyterhub from PyPI wheels (pinned, with every
# dependency, in jupyterhub-constraints.txt; downloaded once by the host's
# pip into CACHE_DIR and copied in). The guest itself has no network.
set -euo pipefail
release=$1
cache=$2
out="$cache/$release"
stamp="$out/.complete-v5"
jupyterhub_wheels="jupyterhub==6.1.1 jupyterhub-systemdspawner==1.0.2 jupyter-server==2.21.1"
[ -e "$stamp" ] && exit 0

mirror=http://deb.debian.org/debian
rm -rf "$out"
mkdir -p "$out"
root="$out/rootfs"
echo "building the $release image in $out (debootstrap, a few minutes)"
debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,dbus,libpam-systemd,linux-image-amd64,initramfs-tools,openssh-server,openssh-client,sshpass,sudo,iproute2,procps,udev,passwd,login,util-linux,e2fsprogs,quota,xfsprogs,man-db,bash-completion \
    "$release" "$root" "$mirror" > "$out/debootstrap.log" 2>&1 \
    || { tail -20 "$out/debootstrap.log"; exit 1; }

if [ "$release" = bookworm ]; then
    echo "installing JupyterHub from PyPI wheels into /opt/jupyterhub"
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    # apt, not debootstrap, resolves the proxy's many node-* dependencies.
    chroot "$root" sh -c "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends python3-venv node-configurable-http-proxy && apt-get clean" \
        > "$out/apt.log" 2>&1 || { tail -20 "$out/apt.log"; exit 1; }
    rm -f "$root/etc/resolv.conf"
    # The wheels come from PyPI through the host's pip (and its trust
    # store: the image's has only Debian's CAs), for the image's Python
    # (pip's --python-version: its Requires-Python checks need the micro
    # version; the wheels' tags come from the host, x86_64 glibc like it).
    pyver=$(chroot "$root" python3 -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
    wheels="$cache/jupyterhub-wheels-$pyver"
    if [ ! -e "$wheels/.complete" ]; then
        rm -rf "$wheels" "$cache/pip-venv"
        python3 -m venv "$cache/pip-venv"
        # shellcheck disable=SC2086 # one word per requirement
        { "$cache/pip-venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip &&
            "$cache/pip-venv/bin/pip" download --quiet --disable-pip-version-check --only-binary=:all: \
                --python-version "$pyver" --constraint "$(dirname "$0")/jupyterhub-constraints.txt" -d "$wheels" $jupyterhub_wheels
        } > "$out/pip.log" 2>&1 || { tail -20 "$out/pip.log"; exit 1; }
        touch "$wheels/.complete"
    fi
    mkdir -p "$root/tmp/wheels"
    cp "$wheels"/*.whl "$root/tmp/wheels/"
    chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin sh -c "python3 -m venv /opt/jupyterhub && \
        /opt/jupyterhub/bin/pip install --quiet --disable-pip-version-check --no-index \
        --find-links /tmp/wheels $jupyterhub_wheels" >> "$out/pip.log" 2>&1 \
        || { tail -20 "$out/pip.log"; exit 1; }
    rm -rf "$root/tmp/wheels"
fi

# The guest has no network: apt needs only dpkg's status, not the mirror's
# package lists (90 MB that every apt-get would read; measured, this saved
# a few seconds of each package check's apt-get, whose 4 to 24 s under
# emulation are dpkg's and the maintainer scripts'). Without them apt still
# refuses a package whose dependencies are not installed.
find "$root/var/lib/apt/lists" -mindepth 1 -maxdepth 1 -type f -delete
rm -f "$root"/var/cache/apt/*.bin

echo "diycloud-test" > "$root/etc/hostname"
printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' > "$root/etc/fstab"
# Password logins as DB users (and as root for the "root is never affected" check).
mkdir -p "$root/etc/ssh/sshd_config.d"
printf 'PasswordAuthentication yes\nKbdInteractiveAuthentication yes\nPermitRootLogin yes\nUsePAM yes\nUseDNS no\n' \
    > "$root/etc/ssh/sshd_config.d/diycloud-tests.conf"
echo 'root:root test password' | chroot "$root" chpasswd
cat > "$root/etc/systemd/system/diycloud-checks.service" <<'UNIT'
[Unit]
Description=diycloud system checks
After=ssh.service systemd-logind.service systemd-user-sessions.service dbus.service
Wants=ssh.service

[Service]
Type=oneshot
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
ExecStart=/bin/sh -c 'mkdir -p /stage && mount -o ro /dev/vdb /stage && /stage/guest-checks.sh; systemctl --no-block poweroff'

[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/diycloud-checks.service "$root/etc/systemd/system/multi-user.target.wants/diycloud-checks.service"
# No serial login prompt competing with the checks for the console.
ln -sf /dev/null "$root/etc/systemd/system/serial-getty@ttyS0.service"

cp "$(ls "$root"/boot/vmlinuz-* | sort | tail -1)" "$out/vmlinuz"
cp "$(ls "$root"/boot/initrd.img-* | sort | tail -1)" "$out/initrd.img"
chmod 0644 "$out/vmlinuz" "$out/initrd.img"
truncate -s 3G "$out/root.img"
mkfs.ext4 -q -F -d "$root" "$out/root.img"
rm -rf "$root"
touch "$stamp"
echo "image ready: $out"
