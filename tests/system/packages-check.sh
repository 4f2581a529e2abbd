#!/usr/bin/env bash
# The packages of packaging/build-packages.sh, checked as files: what the
# .deb and the .rpm hold, their dependencies and their scripts. (Installing,
# upgrading and removing them is the VM tier's.)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
failures=0
check() { # name command...
    local name=$1; shift
    if "$@"; then echo "ok    $name"; else echo "FAIL  $name"; failures=$((failures + 1)); fi
}
has() { grep -qx -- "$1" <<<"$2"; }
contains() { grep -q -- "$1" <<<"$2"; }

packaging/build-packages.sh >/dev/null
deb=$(ls target/packages/diycloud_*_"$(dpkg --print-architecture)".deb)
rpm=$(ls target/packages/diycloud-*-1."$(uname -m)".rpm)
triplet=$(dpkg-architecture -qDEB_HOST_MULTIARCH)

files=$(dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|')
for path in "/usr/lib/$triplet/security/pam_diycloud.so" /usr/sbin/slicectl /etc/diycloud/diycloud.toml \
    /usr/share/pam-configs/diycloud /usr/lib/systemd/system/diycloud-api.service \
    /usr/lib/systemd/system/diycloud-cache-refresh.timer /usr/share/man/man8/slicectl-cache-refresh.8.gz \
    /usr/share/man/man8/slicectl.8.gz /usr/share/man/man8/slicectl-user-add.8.gz \
    /usr/share/man/man8/pam_diycloud.8.gz /usr/share/man/man5/diycloud.toml.5.gz \
    /usr/share/bash-completion/completions/slicectl /usr/share/zsh/vendor-completions/_slicectl \
    /usr/share/fish/vendor_completions.d/slicectl.fish /usr/share/doc/diycloud/copyright \
    /usr/share/doc/diycloud/examples/nginx/diycloud.conf \
    /usr/share/diycloud/jupyterhub/diycloud_jupyterhub.py /usr/share/diycloud/jupyterhub/jupyterhub_config.py; do
    check "deb holds $path" has "$path" "$files"
done
check "deb: no systemd unit is enabled by the package" bash -c '! grep -q "/etc/systemd/system/" <<<"$0"' "$files"
depends=$(dpkg-deb -f "$deb" Depends)
for dep in libc6 libpam0g libpam-runtime; do
    check "deb depends on $dep ($depends)" contains "$dep" "$depends"
done
check "deb: the config is a conffile" has /etc/diycloud/diycloud.toml "$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)"
scripts=$(mktemp -d)
dpkg-deb -e "$deb" "$scripts"
for script in postinst prerm postrm; do
    check "deb: $script is valid sh" sh -n "$scripts/$script"
done
check "deb: postinst creates or migrates the database and registers the profile" \
    bash -c 'grep -q "slicectl init" "$0/postinst" && grep -q "pam-auth-update --package" "$0/postinst"' "$scripts"
check "deb: prerm takes the module out of the stacks on remove" \
    grep -q "pam-auth-update --package --remove diycloud" "$scripts/prerm"
rm -rf "$scripts"
# Every manual page renders without a warning from groff.
for page in target/packages/stage/deb/usr/share/man/man*/*.gz; do
    warnings=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null || echo "man failed")
    check "man page $(basename "$page") renders cleanly${warnings:+: $warnings}" test -z "$warnings"
done

rfiles=$(rpm -qlp "$rpm" 2>/dev/null)
for path in /usr/lib64/security/pam_diycloud.so /usr/sbin/slicectl /etc/diycloud/diycloud.toml \
    /usr/lib/systemd/system/diycloud-api.service /usr/share/man/man8/slicectl.8.gz \
    /usr/share/man/man8/pam_diycloud.8.gz /usr/share/man/man5/diycloud.toml.5.gz \
    /usr/share/zsh/site-functions/_slicectl /usr/share/diycloud/jupyterhub/diycloud_jupyterhub.py; do
    check "rpm holds $path" has "$path" "$rfiles"
done
check "rpm: no Debian-only file" bash -c '! grep -q "pam-configs\|changelog.Debian\|$1" <<<"$0"' "$rfiles" "$triplet"
requires=$(rpm -qp --requires "$rpm" 2>/dev/null)
for req in 'libpam.so.0()(64bit)' 'libc.so.6()(64bit)' pam; do
    check "rpm requires $req" has "$req" "$requires"
done
check "rpm: the config is %config(noreplace)" has /etc/diycloud/diycloud.toml "$(rpm -qcp "$rpm" 2>/dev/null)"
rscripts=$(rpm -qp --scripts "$rpm" 2>/dev/null)
check "rpm: %post creates or migrates the database" contains "slicectl init" "$rscripts"
check "rpm: %preun leaves the authselect profile on removal" contains "authselect select local" "$rscripts"
echo "packages: $failures failed"
[ "$failures" = 0 ]
