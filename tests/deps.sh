#!/usr/bin/env bash
# Installs what building and testing diycloud needs on Debian 12 (as root),
# every tier at once, in ONE apt transaction, then checks every tool.
#
#   tests/deps.sh            install what is missing, then check
#   tests/deps.sh --check    only check; exit 1 naming what is missing
#
# Why one transaction, and why qemu-utils is pinned to the host's release: a
# new machine comes with qemu-utils 10.x from bookworm-backports. Installing
# bookworm's qemu-system-x86 (7.2) on its own makes apt REMOVE that
# qemu-utils (10.x Breaks qemu-system-common < 8), and qemu-img is gone.
# Asking for both from the same release in one transaction keeps a matching
# pair (apt downgrades qemu-utils to the release's version if it must).
set -euo pipefail

# tool to check -> package that provides it
declare -A tools=(
    [pamtester]=pamtester
    [sqlite3]=sqlite3
    [useradd]=passwd
    [nm]=binutils
    [cc]=gcc
    [qemu-system-x86_64]=qemu-system-x86
    [qemu-img]=qemu-utils
    [debootstrap]=debootstrap
    [mkfs.ext4]=e2fsprogs
    [nginx]=nginx
    [curl]=curl
    [openssl]=openssl
    [chromium]=chromium
    [dpkg-shlibdeps]=dpkg-dev
    [fakeroot]=fakeroot
    [rpmbuild]=rpm
    [nft]=nftables
    [node]=nodejs
    [npm]=npm
    [psql]=postgresql-client
    [pg_ctlcluster]=postgresql
)
# files to check -> package
declare -A files=(
    [/usr/include/security/pam_modules.h]=libpam0g-dev
    [/usr/lib/x86_64-linux-gnu/libpam_wrapper.so]=libpam-wrapper
    [/usr/lib/x86_64-linux-gnu/libnss_wrapper.so]=libnss-wrapper
)
packages=(libpam0g-dev pamtester libpam-wrapper libnss-wrapper sqlite3 passwd python3-venv binutils gcc
    qemu-system-x86 qemu-utils debootstrap e2fsprogs nginx curl openssl chromium dpkg-dev fakeroot rpm
    nftables)

have_python_venv() { python3 -c 'import ensurepip, venv' >/dev/null 2>&1; }

missing_report() {
    local missing=()
    for tool in "${!tools[@]}"; do
        command -v "$tool" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null 2>&1 \
            || missing+=("$tool (package ${tools[$tool]})")
    done
    for file in "${!files[@]}"; do
        [ -e "$file" ] || missing+=("$file (package ${files[$file]})")
    done
    have_python_venv || missing+=("python3 venv (package python3-venv)")
    printf '%s\n' "${missing[@]}"
}

if [ "${1:-}" != --check ]; then
    [ "$(id -u)" = 0 ] || { echo "deps.sh: run as root to install packages (or pass --check)" >&2; exit 1; }
    need=()
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || need+=("$p")
    done
    # Node.js (for the portal's browser test, through Playwright): Debian's
    # only where there is none; one from elsewhere (NodeSource's, which has
    # npm inside) stays, as Debian's npm would conflict with it.
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        need+=(nodejs npm)
    fi
    # qemu-system-x86 and qemu-utils must come from the same release.
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    qemu_pair=()
    if [[ " ${need[*]} " == *" qemu-system-x86 "* ]] && [ -n "$codename" ]; then
        qemu_pair=(qemu-system-x86 "qemu-utils/$codename")
        need=("${need[@]/qemu-system-x86}")
        need=("${need[@]/qemu-utils}")
    fi
    if [ ${#need[@]} -gt 0 ] || [ ${#qemu_pair[@]} -gt 0 ]; then
        echo "installing: ${need[*]} ${qemu_pair[*]}"
        apt-get update -qq
        # shellcheck disable=SC2046
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends --allow-downgrades \
            $(printf '%s ' "${need[@]}") "${qemu_pair[@]}" >/dev/null
    fi
    for component in rustfmt clippy; do
        if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
            rustup component add "$component"
        fi
    done
fi

report=$(missing_report)
if [ -n "$report" ]; then
    echo "deps.sh: these tools are still missing after the install:" >&2
    echo "$report" | sed 's/^/  /' >&2
    exit 1
fi
echo "deps: every tool present (qemu $(qemu-system-x86_64 --version | head -1 | awk '{print $4}'), qemu-img $(qemu-img --version | head -1 | awk '{print $3}'))"
