#!/usr/bin/env bash
# Build diycloud and install it on this machine (Debian 12 and relatives):
# pam_diycloud.so into the PAM module directory, slicectl into /usr/local/sbin,
# an example config (if none exists) and an initialised database.
# The PAM stacks in /etc/pam.d are NOT changed: see docs/pam.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
[ "$(id -u)" = 0 ] || { echo "install.sh: run as root" >&2; exit 1; }

if ! dpkg-query -W -f='${Status}' libpam0g-dev 2>/dev/null | grep -q "ok installed"; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libpam0g-dev >/dev/null
fi
packaging/build-release.sh

arch=$(uname -m)
if [ -d "/lib/$arch-linux-gnu/security" ]; then
    moddir="/lib/$arch-linux-gnu/security"
elif [ -d /usr/lib64/security ]; then
    moddir=/usr/lib64/security
else
    moddir=/usr/lib/security
fi
install -m 0644 target/release/libpam_diycloud.so "$moddir/pam_diycloud.so"
install -m 0755 target/release/slicectl /usr/local/sbin/slicectl
install -d -m 0755 /etc/diycloud
[ -e /etc/diycloud/diycloud.toml ] || install -m 0644 packaging/diycloud.toml /etc/diycloud/diycloud.toml
if [ -d /usr/share/pam-configs ]; then
    install -m 0644 packaging/pam-configs/diycloud /usr/share/pam-configs/diycloud
fi
# The REST API's unit (`slicectl serve`) and, for clusters, the cache
# refresh and its timer; none enabled: see the admin guide and docs/cluster.md.
if [ -d /etc/systemd/system ]; then
    for unit in diycloud-api.service diycloud-cache-refresh.service diycloud-cache-refresh.timer; do
        sed 's|/usr/sbin/slicectl|/usr/local/sbin/slicectl|' "packaging/systemd/$unit" \
            >"/etc/systemd/system/$unit"
        chmod 0644 "/etc/systemd/system/$unit"
    done
    if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
fi
/usr/local/sbin/slicectl init
echo "installed: $moddir/pam_diycloud.so, /usr/local/sbin/slicectl, /etc/diycloud/diycloud.toml, diycloud-api.service and diycloud-cache-refresh.timer (not enabled)"
echo "next: slicectl user add NAME; then wire PAM (docs/pam.md), e.g. pam-auth-update --enable diycloud"
