#!/usr/bin/env bash
# Builds the installable packages of diycloud from this checkout:
#   target/packages/diycloud_<version>_<arch>.deb       (Debian, Ubuntu)
#   target/packages/diycloud-<version>-1.<arch>.rpm     (Fedora, RHEL, openSUSE)
# from one staged tree: dpkg-deb, with dependencies from what the binaries
# link (dpkg-shlibdeps); rpmbuild from a spec, with rpm's own dependency
# scan (rpm's post-install steps are off: the tree is already stripped and
# compressed, and they expect bash where Debian's sh is dash). Needs: cargo,
# dpkg-dev, fakeroot, rpm (tests/deps.sh).
#
#   packaging/build-packages.sh [--no-build] [--binaries DIR --source DIR --version V --out DIR]
#
# --no-build: use target/release as it is. --binaries DIR: package the
# slicectl and libpam_diycloud.so in DIR instead (an older build, for the
# upgrade test), with the config, docs and unit of the checkout --source
# DIR, as version V, into --out DIR. The package scripts are this checkout's.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out="$root/target/packages"
bin="$root/target/release"
src="$root"
build=yes
version=""
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) build="" ;;
        --binaries) bin=$(cd "$2" && pwd); build=""; shift ;;
        --source) src=$(cd "$2" && pwd); shift ;;
        --version) version=$2; shift ;;
        --out) mkdir -p "$2"; out=$(cd "$2" && pwd); shift ;;
        *) echo "usage: build-packages.sh [--no-build] [--binaries DIR --source DIR --version V --out DIR]" >&2; exit 2 ;;
    esac
    shift
done
stage="$out/stage"

if [ -n "$build" ]; then
    packaging/build-release.sh
fi
[ -n "$version" ] || version=$(cargo metadata --no-deps --format-version 1 |
    python3 -c 'import json, sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "slicectl"))')
arch=$(dpkg --print-architecture)
triplet=$(dpkg-architecture -qDEB_HOST_MULTIARCH)

# --- the tree, as installed -----------------------------------------------------
rm -rf "$stage" && mkdir -p "$stage/deb"
tree="$stage/deb"
# The module in the multiarch PAM directory under /usr (merged /usr: Debian
# 12 and later, where /lib is /usr/lib).
install -D -m 0644 "$bin/libpam_diycloud.so" "$tree/usr/lib/$triplet/security/pam_diycloud.so"
install -D -m 0755 "$bin/slicectl" "$tree/usr/sbin/slicectl"
strip --strip-unneeded "$tree/usr/lib/$triplet/security/pam_diycloud.so" "$tree/usr/sbin/slicectl"
install -D -m 0644 "$src/packaging/diycloud.toml" "$tree/etc/diycloud/diycloud.toml"
install -D -m 0644 "$src/packaging/pam-configs/diycloud" "$tree/usr/share/pam-configs/diycloud"
# Every unit the source has (an older source, packaged for the upgrade
# check, has fewer).
for unit in "$src"/packaging/systemd/*.service "$src"/packaging/systemd/*.timer; do
    [ -e "$unit" ] || continue
    install -D -m 0644 "$unit" "$tree/usr/lib/systemd/system/$(basename "$unit")"
done
doc="$tree/usr/share/doc/diycloud"
install -D -m 0644 "$src/README.md" "$doc/README.md"
for page in "$src"/docs/*.md; do install -m 0644 "$page" "$doc/"; done
install -D -m 0644 "$src/packaging/nginx/diycloud.conf" "$doc/examples/nginx/diycloud.conf"
install -D -m 0644 "$src/packaging/pam.d/diycloud-example" "$doc/examples/pam.d/diycloud-example"
install -m 0644 packaging/deb/copyright "$doc/copyright"
# JupyterHub's spawner hook and the files of docs/jupyterhub.md's setup
# (an older source may not have them).
mkdir -p "$tree/usr/share/diycloud"
if [ -d "$src/packaging/jupyterhub" ]; then
    for file in diycloud_jupyterhub.py jupyterhub_config.py jupyterhub.service pam-jupyterhub; do
        install -D -m 0644 "$src/packaging/jupyterhub/$file" "$tree/usr/share/diycloud/jupyterhub/$file"
    done
fi
# Manual pages and completions, from the command line's own definition (a
# build older than `slicectl completions` borrows this checkout's).
gen="$bin/slicectl"
"$gen" completions bash >/dev/null 2>&1 || gen="$root/target/release/slicectl"
man="$tree/usr/share/man/man8"
mkdir -p "$man"
"$gen" manpages "$man"
# The module's and the config's pages, from the docs.
python3 packaging/md2man.py "$src/docs/pam.md" pam_diycloud 8 \
    "PAM module of diycloud: passwords, account state and resource limits from its user database" \
    > "$man/pam_diycloud.8"
mkdir -p "$tree/usr/share/man/man5"
python3 packaging/md2man.py "$src/docs/admin-guide.md" diycloud.toml 5 \
    "configuration of diycloud (pam_diycloud, slicectl, slicectl serve)" \
    --from Configuration --to "slicectl reference" > "$tree/usr/share/man/man5/diycloud.toml.5"
gzip -9n "$man"/*.8 "$tree/usr/share/man/man5/diycloud.toml.5"
"$gen" completions bash |
    install -D -m 0644 /dev/stdin "$tree/usr/share/bash-completion/completions/slicectl"
"$gen" completions zsh |
    install -D -m 0644 /dev/stdin "$tree/usr/share/zsh/vendor-completions/_slicectl"
"$gen" completions fish |
    install -D -m 0644 /dev/stdin "$tree/usr/share/fish/vendor_completions.d/slicectl.fish"
gzip -9n -c packaging/deb/changelog > "$doc/changelog.Debian.gz"

# --- control ----------------------------------------------------------------------
mkdir -p "$tree/DEBIAN"
install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$tree/DEBIAN/"
echo /etc/diycloud/diycloud.toml > "$tree/DEBIAN/conffiles"
# dpkg-shlibdeps wants a debian/control beside it: a scratch one.
shlib="$stage/shlibdeps"
mkdir -p "$shlib/debian"
printf 'Source: diycloud\n\nPackage: diycloud\nArchitecture: any\n' > "$shlib/debian/control"
depends=$(cd "$shlib" && dpkg-shlibdeps -O \
    "$tree/usr/sbin/slicectl" "$tree/usr/lib/$triplet/security/pam_diycloud.so" |
    sed -n 's/^shlibs:Depends=//p')
[ -n "$depends" ] || { echo "build-packages.sh: dpkg-shlibdeps found no dependencies" >&2; exit 1; }
size=$(du -sk --exclude=DEBIAN "$tree" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
    -e "s/@DEPENDS@/$depends/" packaging/deb/control.in > "$tree/DEBIAN/control"
(cd "$tree" && find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | sort | xargs md5sum) \
    > "$tree/DEBIAN/md5sums"

mkdir -p "$out"
deb="$out/diycloud_${version}_${arch}.deb"
fakeroot dpkg-deb --build -Zxz "$tree" "$deb" >/dev/null
echo "$deb"

# --- the .rpm: the same files in Fedora/RHEL's places -------------------------------
rpm_arch=$(uname -m)
rtree="$stage/rpm-tree"
mkdir -p "$rtree"
cp -a "$tree/." "$rtree/"
rm -rf "$rtree/DEBIAN" "$rtree/usr/share/pam-configs" "$rtree/usr/share/doc/diycloud/changelog.Debian.gz"
install -D -m 0644 "$rtree/usr/lib/$triplet/security/pam_diycloud.so" "$rtree/usr/lib64/security/pam_diycloud.so"
rm -rf "${rtree:?}/usr/lib/$triplet"
install -D -m 0644 "$rtree/usr/share/zsh/vendor-completions/_slicectl" "$rtree/usr/share/zsh/site-functions/_slicectl"
rm -rf "$rtree/usr/share/zsh/vendor-completions"
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$rpm_arch/" -e "s|@TREE@|$rtree|" \
    packaging/rpm/diycloud.spec.in > "$stage/diycloud.spec"
rpmbuild --quiet -bb "$stage/diycloud.spec" \
    --define "_topdir $stage/rpmbuild" --define "_rpmdir $out" \
    --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
    --define "__os_install_post %{nil}" --define "debug_package %{nil}" \
    --define "_build_id_links none" >/dev/null
echo "$out/diycloud-$version-1.$rpm_arch.rpm"
