#!/bin/bash
# Installs this build's module and slicectl in the test VM, as
# packaging/install.sh would, and wires /etc/pam.d for sshd with
# pam_diycloud before pam_systemd. The guest_checks binary runs it after
# the packages section (which needs the guest clean) and before the rest.
set -eu
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
stage=/stage
moddir=/lib/x86_64-linux-gnu/security
install -m 0644 "$stage/pam_diycloud.so" "$moddir/pam_diycloud.so"
install -m 0755 "$stage/slicectl" /usr/local/sbin/slicectl
slicectl init >/dev/null
sed -i '1i auth [success=done user_unknown=ignore authinfo_unavail=ignore ignore=ignore default=die] pam_diycloud.so' /etc/pam.d/common-auth
sed -i '1i account [success=done ignore=ignore default=bad] pam_diycloud.so' /etc/pam.d/common-account
sed -i '/pam_systemd.so/i session required pam_diycloud.so' /etc/pam.d/common-session
