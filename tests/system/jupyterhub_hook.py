"""The JupyterHub spawner hook (packaging/jupyterhub/diycloud_jupyterhub.py)
on its failure paths, through the real slicectl where this machine allows
(no systemd here: the VM tier runs the whole spawn), and through stand-in
slicectl scripts for answers the real one does not give (garbage, a hang).

Usage: python3 jupyterhub_hook.py HOOK_DIR SLICECTL WORK_DIR
  with DIYCLOUD_CONFIG naming a config whose db has the users
  nosys (no system account) and gone (disabled).
"""
import asyncio
import logging
import os
import sys

hook_dir, real_slicectl, work = sys.argv[1:4]
sys.path.insert(0, hook_dir)
import diycloud_jupyterhub as hook  # noqa: E402

failed = 0


def check(name, ok, detail=""):
    global failed
    print(("ok    " if ok else "FAIL  ") + name + ("" if ok else f": {detail}"))
    failed += not ok


class Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


class User:
    def __init__(self, name):
        self.name = name


class Spawner:
    """What the hook uses of a SystemdSpawner."""

    def __init__(self, name, **traits):
        self.user = User(name)
        self.log = logging.getLogger(f"spawner-{name}")
        self.records = Records()
        self.log.addHandler(self.records)
        self.log.setLevel(logging.INFO)
        self.environment = {"KEEP": "me"}
        self.slice = None
        self.dynamic_users = False
        self.username_template = "{USERNAME}"
        for key, value in traits.items():
            setattr(self, key, value)

    def _expand_user_vars(self, template):
        return template.format(USERNAME=self.user.name, USERID=7)


def stand_in(name, body):
    """A slicectl that runs BODY (sh); it records its arguments."""
    path = os.path.join(work, name)
    with open(path, "w") as f:
        f.write(f'#!/bin/sh\necho "$@" > {work}/{name}.args\n{body}\n')
    os.chmod(path, 0o755)
    return path


async def refused(spawner):
    """The hook's refusal: (what the user reads, what the log has)."""
    try:
        await hook.pre_spawn_hook(spawner)
    except hook.PrepareRefused as e:
        return str(e), " ".join(spawner.records.lines)
    return None, " ".join(spawner.records.lines)


async def never_from_path():
    """The hook runs the packaged /usr/sbin/slicectl, never one that comes
    first in the hub's PATH; another is named only in the hub's config."""
    global hook
    import importlib

    planted = os.path.join(work, "path")
    os.makedirs(planted, exist_ok=True)
    fake = os.path.join(planted, "slicectl")
    good = '{"username": "amy", "uid": 1500, "slice": "user-1500.slice", "env": {}, "complete": true, "steps": []}'
    with open(fake, "w") as f:
        f.write(f"#!/bin/sh\ntouch {planted}/ran\necho '{good}'\n")
    os.chmod(fake, 0o755)
    saved = os.environ.get("PATH", "")
    os.environ["PATH"] = planted + os.pathsep + saved
    try:
        # As the hub imports it: with that PATH in its environment.
        hook = importlib.reload(hook)
        check("by default the hook names the packaged /usr/sbin/slicectl", hook.SLICECTL == "/usr/sbin/slicectl", hook.SLICECTL)
        spawner = Spawner("amy")
        told, logged = await refused(spawner)
        ran = os.path.exists(os.path.join(planted, "ran"))
        check("a slicectl first in the hub's PATH is not run", not ran, logged)
        check("... nor does its answer start a server", spawner.slice is None, spawner.slice)
        if not os.path.exists("/usr/sbin/slicectl"):
            check("... the refusal names /usr/sbin/slicectl", told is not None and "/usr/sbin/slicectl" in logged, logged)
        for relative in ["slicectl", "bin/slicectl", ""]:
            hook.SLICECTL = relative
            told, logged = await refused(Spawner("amy"))
            ran = os.path.exists(os.path.join(planted, "ran"))
            check(f"SLICECTL = {relative!r} (not absolute) is refused", told is not None and "absolute" in logged and not ran, logged)
    finally:
        os.environ["PATH"] = saved


async def main():
    await never_from_path()
    hook.SLICECTL = real_slicectl
    for user, reason in [
        ("nobody", "no such user: nobody"),
        ("nosys", "no system account"),
        ("gone", "gone may not log in now: the account is disabled"),
    ]:
        spawner = Spawner(user)
        told, logged = await refused(spawner)
        check(f"slicectl refuses {user}: the spawn stops", told is not None, logged)
        check(f"... the user reads no reason ({told})", told is not None and reason not in told, told)
        check(f"... the hub's log has it ({reason})", reason in logged, logged)
        check(f"... nothing of {user}'s spawner changed", spawner.slice is None and spawner.environment == {"KEEP": "me"})

    good = '{"username": "amy", "uid": 1500, "slice": "user-1500.slice", "env": {"CUDA_VISIBLE_DEVICES": "0"}, "complete": true, "steps": []}'
    hook.SLICECTL = stand_in("good", f"echo '{good}'")
    spawner = Spawner("amy", username_template="{USERNAME}-lab")
    told, logged = await refused(spawner)
    check("an answer starts the server in the slice", told is None and spawner.slice == "user-1500.slice", logged)
    check(
        "... with the session's environment added to the server's",
        spawner.environment == {"KEEP": "me", "CUDA_VISIBLE_DEVICES": "0"},
        spawner.environment,
    )
    with open(f"{work}/good.args") as f:
        args = f.read().split()
    check("... asked for the system account's name, after --", args == ["--json", "prepare", "--", "amy-lab"], args)

    cases = [
        ("garbage", "echo 'not json'", "unexpected"),
        ("empty", "exit 0", "unexpected answer ''"),
        ("status", f"echo '{good}'; exit 3", "exit status 3"),
        ("error", 'echo \'{"error": "runtime", "detail": "cannot reach systemd"}\'; exit 1', "cannot reach systemd"),
        ("badslice", 'echo \'{"slice": "../../etc/passwd", "env": {}}\'', "unexpected answer"),
        ("badenv", 'echo \'{"slice": "user-1.slice", "env": "CUDA_VISIBLE_DEVICES=0"}\'', "unexpected answer"),
        ("hang", "exec sleep 30", "took more than 1 s"),
    ]
    hook.TIMEOUT_SECONDS = 1
    for name, body, reason in cases:
        hook.SLICECTL = stand_in(name, body)
        spawner = Spawner("amy")
        told, logged = await refused(spawner)
        check(f"a stand-in slicectl that answers {name}: refused ({reason})", told is not None and reason in logged, logged)
        check(f"... and the spawner is untouched ({name})", spawner.slice is None)

    hook.SLICECTL = os.path.join(work, "no-such-slicectl")
    told, logged = await refused(Spawner("amy"))
    check("a missing slicectl refuses", told is not None and "no-such-slicectl" in logged, logged)
    told, logged = await refused(Spawner("amy", dynamic_users=True))
    check("dynamic users are refused (the server must run as the user)", told is not None and "dynamic_users" in told, told)


asyncio.run(main())
print(f"{failed} failed")
sys.exit(1 if failed else 0)
