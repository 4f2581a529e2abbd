#!/bin/bash
# Runs inside the test VM as root (from diycloud-checks.service), against
# real systemd, a real kernel and real OpenSSH. Prints one line per check:
#   DIYCLOUD PASS name | DIYCLOUD FAIL name: expected ...; saw ...
# and DIYCLOUD DONE at the end. The host (run.sh) reads them from the console.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
failures=0
say() { echo "DIYCLOUD $*"; }
pass() { say "PASS $1"; }
fail() { say "FAIL $1: expected $2; saw $3"; failures=$((failures + 1)); }
check() { # name expected actual
    if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "$2" "$3"; fi
}
check_range() { # name low high actual (decimals)
    if awk -v l="$2" -v h="$3" -v a="$4" 'BEGIN { exit !(a >= l && a <= h) }'; then
        pass "$1 ($4)"
    else
        fail "$1" "between $2 and $3" "$4"
    fi
}

stage=/stage
cgroup_mode=$(stat -fc %T /sys/fs/cgroup)
say "INFO systemd $(systemctl --version | head -1 | awk '{print $2}'), kernel $(uname -r), /sys/fs/cgroup is $cgroup_mode"

# --- install, as packaging/install.sh would, and wire PAM for sshd ---------
moddir=/lib/x86_64-linux-gnu/security
install -m 0644 "$stage/pam_diycloud.so" "$moddir/pam_diycloud.so"
install -m 0755 "$stage/slicectl" /usr/local/sbin/slicectl
slicectl init >/dev/null
sed -i '1i auth [success=done user_unknown=ignore authinfo_unavail=ignore ignore=ignore default=die] pam_diycloud.so' /etc/pam.d/common-auth
sed -i '1i account [success=done ignore=ignore default=bad] pam_diycloud.so' /etc/pam.d/common-account
sed -i '/pam_systemd.so/i session required pam_diycloud.so' /etc/pam.d/common-session
grep -q pam_diycloud /etc/pam.d/common-session || fail "pam stack" "pam_diycloud in common-session" "$(cat /etc/pam.d/common-session)"
doctor=$(slicectl doctor 2>&1)
if echo "$doctor" | grep -q "^ok    pam.*before pam_systemd"; then pass "doctor sees pam_diycloud before pam_systemd"; else fail "doctor" "pam ok" "$doctor"; fi
if echo "$doctor" | grep -q "^ok    systemd"; then pass "doctor reaches systemd"; else fail "doctor systemd" "ok" "$doctor"; fi

password='alice pw 12345'
echo "$password" | slicectl user add alice --password-stdin --cpu 0.5 --memory 256M --tasks 64 >/dev/null
uid=$(id -u alice)
slice="user-$uid.slice"
ssh_opts=(-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=60)
as_alice() { sshpass -p "$password" ssh "${ssh_opts[@]}" alice@127.0.0.1 "$@"; }

# --- 1. a real SSH login lands in a sized slice ------------------------------
cg=$(as_alice cat /proc/self/cgroup)
case "$cg" in *"$slice"*) pass "login shell is inside $slice" ;; *) fail "login cgroup" "$slice" "$cg" ;; esac
check "CPUQuotaPerSecUSec" "500ms" "$(systemctl show "$slice" -P CPUQuotaPerSecUSec)"
check "MemoryMax" "268435456" "$(systemctl show "$slice" -P MemoryMax)"
check "TasksMax" "64" "$(systemctl show "$slice" -P TasksMax)"

# --- 2. the kernel enforces it inside the session ----------------------------
oom=$(as_alice 'perl -e "\$x = q(a) x (400 * 1024 * 1024); print qq(allocated\n)"; echo rc=$?')
check "allocating 400M under MemoryMax=256M is OOM-killed" "rc=137" "$(echo "$oom" | grep -o 'rc=[0-9]*')"

# The slice's CPU time in ns: v2 cpu.stat's usage_usec; v1 cpuacct.usage.
if [ "$cgroup_mode" = cgroup2fs ]; then
    cpu_usage() { awk '/^usage_usec/ { printf "%.0f\n", $2 * 1000 }' "/sys/fs/cgroup/user.slice/$slice/cpu.stat"; }
else
    cpu_usage() { cat "/sys/fs/cgroup/cpu,cpuacct/user.slice/$slice/cpuacct.usage"; }
fi
as_alice "$stage/cpu_burn 2 14" &
burner=$!
sleep 4
u0=$(cpu_usage); t0=$(date +%s%N)
sleep 8
u1=$(cpu_usage); t1=$(date +%s%N)
wait "$burner"
cores=$(awk -v u0="$u0" -v u1="$u1" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.3f", (u1 - u0) / (t1 - t0) }')
check_range "a 2-thread CPU burner under a 0.5-core quota gets 0.5 core" 0.425 0.575 "$cores"

forks=$(as_alice 'perl -e '\''my @kids; for (1..100) { my $p = fork(); last unless defined $p; if (!$p) { sleep 30; exit 0 } push @kids, $p } print scalar(@kids), "\n"; kill 9, @kids'\''')
if [ -n "$forks" ] && [ "$forks" -gt 0 ] && [ "$forks" -lt 64 ]; then
    pass "forking past TasksMax=64 fails (got $forks children)"
else
    fail "TasksMax enforcement" "fewer than 64 children" "$forks"
fi

# --- 3. live changes while logged in, and usage ------------------------------
as_alice 'sleep 40' &
holder=$!
sleep 3
slicectl user mod alice --memory 512M >/dev/null
slicectl apply alice >/dev/null
check "slicectl apply changes the live slice" "536870912" "$(systemctl show "$slice" -P MemoryMax)"
check "the slice is active while logged in" "active" "$(systemctl show "$slice" -P ActiveState)"
usage=$(slicectl usage alice --json)
nonzero=$(echo "$usage" | tr -d ' \n' | grep -o '"\(cpu_usage_nsec\|memory_current\|tasks_current\)":[1-9][0-9]*' | wc -l)
check "slicectl usage shows non-zero CPU time, memory and tasks" "3" "$nonzero"

# --- 6. no thread or child left behind; benchmark ------------------------------
mkdir -p /tmp/probe-pam.d
echo "session required pam_diycloud.so" > /tmp/probe-pam.d/probe
echo "session required pam_diycloud.so debug" > /tmp/probe-pam.d/probe-debug
# The same six properties the module sends for alice (now 0.5 core, 512M, 64 tasks).
probe=$("$stage/session_probe" alice /tmp/probe-pam.d probe 40 "$slice" \
    CPUAccounting=yes MemoryAccounting=yes TasksAccounting=yes CPUQuota=50% MemoryMax=512M TasksMax=64)
probe_rc=$?
echo "$probe" | sed 's/^/DIYCLOUD INFO /'
check "pam_open_session leaves the same threads and children" "0" "$probe_rc"
echo "$probe" | grep '^probe: bench' | sed 's/^probe: bench/DIYCLOUD BENCH/'
# Where a session open's time goes, from the module's own debug timing.
"$stage/session_probe" alice /tmp/probe-pam.d probe-debug 3 "$slice" CPUQuota=50% >/dev/null
journalctl -q --no-pager -g "session open took" | tail -3 | sed 's/^.*pam_diycloud/DIYCLOUD INFO pam_diycloud/'
kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null

# --- 4. systemd's bus unreachable -------------------------------------------
touch /tmp/no-bus
mount --bind /tmp/no-bus /run/dbus/system_bus_socket
out=$(as_alice 'echo logged-in' 2>&1)
case "$out" in
    *logged-in*) fail "deny: login refused with the bus unreachable" "refused" "$out" ;;
    *) pass "deny: login refused with the bus unreachable" ;;
esac
if journalctl -q --no-pager -g "login refused .on_session_error = deny." | grep -q .; then
    pass "deny: the refusal is logged with its reason"
else
    fail "deny log" "a syslog line" "$(journalctl -q --no-pager | grep -i diycloud | tail -5)"
fi
root_out=$(sshpass -p 'root test password' ssh "${ssh_opts[@]}" root@127.0.0.1 'echo root-ok' 2>&1)
check "root's login is not affected" "root-ok" "$root_out"
mkdir -p /etc/diycloud
printf '[session]\non_session_error = "allow"\n' > /etc/diycloud/diycloud.toml
out=$(as_alice 'echo logged-in' 2>&1)
check "allow: login goes on with the bus unreachable" "logged-in" "$out"
if journalctl -q --no-pager -g "on_session_error = allow" | grep -q .; then
    pass "allow: the failure is logged"
else
    fail "allow log" "a syslog line" "$(journalctl -q --no-pager | grep -i diycloud | tail -5)"
fi
umount /run/dbus/system_bus_socket
rm -f /etc/diycloud/diycloud.toml

say "DONE failures=$failures"
