# The report helpers of the checks that stay in shell (jupyterhub-checks.sh),
# sourced by the guest_checks binary before them. Each check prints one line
# on the console, as the binary's own do:
#   DIYCLOUD PASS name | DIYCLOUD FAIL name: expected ...; saw ...
# shellcheck shell=bash
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
say() { echo "DIYCLOUD $*"; }
pass() { say "PASS $1"; }
fail() { say "FAIL $1: expected $2; saw $3"; }
check() { # name expected actual
    if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "$2" "$3"; fi
}
oneline_q() { tr '\n' '|'; }
# What the JupyterHub checks leave, taken away: at their end, and by the
# guest_checks binary when it had to kill them (a later section adds carol
# again).
jupyterhub_cleanup() {
    systemctl stop jupyterhub "jupyter-carol-singleuser.service" 2>/dev/null
    loginctl terminate-user carol 2>/dev/null
    for _ in $(seq 60); do pgrep -u carol >/dev/null || break; sleep 0.5; done
    slicectl user del carol --remove-home >/dev/null 2>&1
    rm -f /dev/nvidia0 /dev/nvidia1 /dev/nvidiactl
}
