# shellcheck shell=bash disable=SC2154 # $stage: set by the guest_checks binary before sourcing
# Run by the guest_checks binary (section 13), with guest-lib.sh's helpers, on
# the boot run.sh marks with $stage/jupyterhub-boot, whose image has JupyterHub,
# SystemdSpawner and Jupyter Server installed from PyPI wheels in
# /opt/jupyterhub, and Debian's configurable-http-proxy. The guest has no
# network. The hub runs with the shipped files (packaging/jupyterhub/)
# plus a test service token and longer timeouts for the emulated guest.
#
# carol logs in to the hub on loopback with her diycloud password; her
# server must run in user-UID.slice with her limits, its terminal must be
# OOM-killed past her memory, refused the GPU she was not granted, and see
# CUDA_VISIBLE_DEVICES of her grant; a wrong password must count toward her
# lockout; a memory change must reach her running server.

hub_py=/opt/jupyterhub/bin/python
hub_client() { HUB_TOKEN=$hub_token "$hub_py" "$stage/jupyterhub_client.py" "$@" 2>&1 | tail -1; }

# Fake GPU nodes as in section 10: opening one the slice allows gives ENXIO.
mknod -m 666 /dev/nvidia0 c 195 0
mknod -m 666 /dev/nvidia1 c 195 1
mknod -m 666 /dev/nvidiactl c 195 255

install -D -m 0644 "$stage/jupyterhub/diycloud_jupyterhub.py" /usr/share/diycloud/jupyterhub/diycloud_jupyterhub.py
install -D -m 0644 "$stage/jupyterhub/jupyterhub_config.py" /etc/jupyterhub/jupyterhub_config.py
install -m 0644 "$stage/jupyterhub/pam-jupyterhub" /etc/pam.d/jupyterhub
install -m 0644 "$stage/jupyterhub/jupyterhub.service" /etc/systemd/system/jupyterhub.service
hub_token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
cat > /etc/jupyterhub/test_config.py <<EOF
c = get_config()
load_subconfig("/etc/jupyterhub/jupyterhub_config.py")
# This guest has slicectl in /usr/local/sbin (install.sh's place), not the
# packages' /usr/sbin: named here, the hub's own config, as docs/jupyterhub.md says.
import diycloud_jupyterhub
diycloud_jupyterhub.SLICECTL = "/usr/local/sbin/slicectl"
c.JupyterHub.services = [{"name": "diycloud-test", "api_token": "$hub_token"}]
c.JupyterHub.load_roles = [{"name": "diycloud-test", "services": ["diycloud-test"],
    "scopes": ["read:users", "read:servers", "access:servers", "servers"]}]
c.Spawner.start_timeout = 240
c.Spawner.http_timeout = 240
EOF
mkdir -p /etc/systemd/system/jupyterhub.service.d
printf '[Service]\nExecStart=\nExecStart=/opt/jupyterhub/bin/jupyterhub -f /etc/jupyterhub/test_config.py\n' \
    > /etc/systemd/system/jupyterhub.service.d/test.conf
systemctl daemon-reload

carol_pw='carol hub pw 1'
echo "$carol_pw" | slicectl user add carol --password-stdin --cpu 1 --memory 256M --tasks 300 --gpus 0 >/dev/null
check "slicectl user add carol (1 CPU, 256M, 300 tasks, GPU 0)" "0" "$?"
carol_uid=$(id -u carol)
carol_slice="user-$carol_uid.slice"

systemctl start jupyterhub
hub_up=""
for _ in $(seq 180); do
    if "$hub_py" -c 'import sys, urllib.request; urllib.request.urlopen("http://127.0.0.1:8000/hub/api/", timeout=5)' 2>/dev/null; then
        hub_up=yes; break
    fi
    sleep 1
done
if [ -z "$hub_up" ]; then
    fail "the hub answers on 127.0.0.1:8000" "an answer within 180 s" "$(journalctl -u jupyterhub --no-pager | tail -5 | oneline_q)"
else
    pass "the hub answers on 127.0.0.1:8000"

    # 2. A wrong password is refused and counts toward carol's lockout.
    check "a wrong password at the hub login is refused" "refused 403" "$(hub_client login carol 'not her password')"
    check "the hub's wrong password counts toward carol's lockout" "1" \
        "$(slicectl --json user show carol | "$hub_py" -c 'import json, sys; print(json.load(sys.stdin)["failed_logins"])')"

    # 1. The right one starts her server, inside her slice.
    check "carol logs in to the hub with her diycloud password; her server starts" "accepted" "$(hub_client login carol "$carol_pw")"
    server_unit=jupyter-carol-singleuser.service
    server_pid=$(systemctl show "$server_unit" -P MainPID)
    check "her server runs as carol" "carol" "$(ps -o user= -p "$server_pid" 2>&1)"
    check "her server is in $carol_slice" "0::/user.slice/$carol_slice/$server_unit" "$(cat "/proc/$server_pid/cgroup" 2>&1)"
    check "her slice: CPUQuota 100%, MemoryMax 256M, TasksMax 300" "CPUQuotaPerSecUSec=1s|MemoryMax=268435456|TasksMax=300|" \
        "$(systemctl show "$carol_slice" -p CPUQuotaPerSecUSec -p MemoryMax -p TasksMax | sort | oneline_q)"
    check "her server's environment has her CUDA_VISIBLE_DEVICES" "CUDA_VISIBLE_DEVICES=0" \
        "$(tr '\0' '\n' < "/proc/$server_pid/environ" | grep '^CUDA_VISIBLE_DEVICES=')"
    check "her terminal sees the same" "status 0: 0 PCI_BUS_ID" "$(hub_client run carol 'echo $CUDA_VISIBLE_DEVICES $CUDA_DEVICE_ORDER')"
    check "her terminal opens /dev/nvidia0, which she was granted (ENXIO)" "status 0: No such device or address" \
        "$(hub_client run carol 'cat /dev/nvidia0 2>&1 | sed "s/.*: //"')"
    check "her terminal is refused /dev/nvidia1 by the slice's device policy (EPERM)" "status 0: Operation not permitted" \
        "$(hub_client run carol 'cat /dev/nvidia1 2>&1 | sed "s/.*: //"')"
    ooms_before=$(awk '$1 == "oom_kill" { print $2 }' "/sys/fs/cgroup/user.slice/$carol_slice/memory.events")
    check "400M in her terminal under her 256M is OOM-killed" "status 137: Killed" \
        "$(hub_client run carol 'python3 -c "b = b\"x\" * (400 << 20)"')"
    check "the kernel counted the OOM kill in her slice" "$((ooms_before + 1))" \
        "$(awk '$1 == "oom_kill" { print $2 }' "/sys/fs/cgroup/user.slice/$carol_slice/memory.events")"
    check "her server survives the kill of its terminal's process" "active" "$(systemctl is-active "$server_unit")"

    # 3. A change of her memory reaches the running server.
    slicectl user mod carol --memory 768M >/dev/null
    check "slicectl user mod carol --memory 768M" "0" "$?"
    check "her slice's memory.max is the new limit" "805306368" "$(cat "/sys/fs/cgroup/user.slice/$carol_slice/memory.max")"
    check "her running server now holds 400M" "status 0: held" \
        "$(hub_client run carol 'python3 -c "b = b\"x\" * (400 << 20); print(\"held\")"')"

    # Her SSH sessions share the slice; logging out leaves the server be.
    # The guest_checks binary's SSH options (guest::SSH_OPTIONS), one word each.
    read -ra hub_ssh <<<"${DIYCLOUD_SSH_OPTIONS:?set by the guest_checks binary}"
    out=$(sshpass -p "$carol_pw" ssh "${hub_ssh[@]}" carol@127.0.0.1 cat /proc/self/cgroup 2>&1)
    case "$out" in
        "0::/user.slice/$carol_slice/session-"*) pass "her SSH session shares $carol_slice with her server" ;;
        *) fail "her SSH session's cgroup" "0::/user.slice/$carol_slice/session-..." "$out" ;;
    esac
    sleep 3
    check "her server runs on after she logs out of SSH" "active" "$(systemctl is-active "$server_unit")"

    # Once disabled, her server does not start again, whatever her login.
    api_stop=$(HUB_TOKEN=$hub_token "$hub_py" -c '
import os, requests
r = requests.delete("http://127.0.0.1:8000/hub/api/users/carol/server",
                    headers={"Authorization": "token " + os.environ["HUB_TOKEN"]}, timeout=120)
print(r.status_code)' 2>&1)
    for _ in $(seq 60); do systemctl is-active --quiet "$server_unit" || break; sleep 1; done
    check "the hub stops her server (HTTP $api_stop)" "inactive" "$(systemctl is-active "$server_unit")"
    slicectl user mod carol --disable >/dev/null
    check "once she is disabled, the hub cannot start her server" "refused" "$(hub_client start carol)"
    check "... because diycloud refused it" "yes" \
        "$(journalctl -u jupyterhub --no-pager | grep -aq "diycloud: not starting carol's server: .*the account is disabled" && echo yes || echo no)"
    check "... and no server of hers runs" "inactive" "$(systemctl is-active "$server_unit")"
fi
say "INFO the hub's diycloud lines: $(journalctl -u jupyterhub --no-pager | grep -a "diycloud:" | sed "s/.*diycloud: /diycloud: /" | cut -c1-160 | oneline_q)"
jupyterhub_cleanup
