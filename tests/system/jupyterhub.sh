#!/usr/bin/env bash
# JupyterHub's PAMAuthenticator (pip jupyterhub in a venv) logs a diycloud
# user in with the right password and refuses a wrong one; the spawner hook
# (packaging/jupyterhub/diycloud_jupyterhub.py) refuses what it must. The
# whole hub, with SystemdSpawner, runs in the VM tier (jupyterhub-checks.sh).
# Needs: the workspace built (target/debug), python3 with venv, pam_wrapper.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
venv="$root/tests/.cache/venv"
if ! "$venv/bin/python" -c 'import jupyterhub' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check jupyterhub
fi
so="$root/target/debug/libpam_diycloud.so"
slicectl="$root/target/debug/slicectl"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
touch "$work/none.toml"
"$slicectl" --db "$work/db" --config "$work/none.toml" init >/dev/null
echo 'hub password 1' | "$slicectl" --db "$work/db" --config "$work/none.toml" \
    user add hubuser --password-stdin --no-system-account >/dev/null
mkdir "$work/pam.d"
printf 'auth required %s db=%s\naccount required %s db=%s\n' "$so" "$work/db" "$so" "$work/db" \
    > "$work/pam.d/jupyterhub"
PAM_WRAPPER=1 PAM_WRAPPER_SERVICE_DIR="$work/pam.d" \
    "$venv/bin/python" "$root/tests/system/jupyterhub_pam.py" jupyterhub hubuser 'hub password 1'

# The spawner hook (packaging/jupyterhub/) on its refusals, with the real
# slicectl against a database of its own; the VM tier runs a real spawn.
printf 'db = "%s/hookdb"\n' "$work" > "$work/hook.toml"
export DIYCLOUD_CONFIG="$work/hook.toml"
"$slicectl" init >/dev/null
for name in nosys gone; do
    echo 'hook password 1' | "$slicectl" user add "$name" --password-stdin --no-system-account >/dev/null
done
"$slicectl" user mod gone --disable >/dev/null
python3 "$root/tests/system/jupyterhub_hook.py" "$root/packaging/jupyterhub" "$slicectl" "$work"
