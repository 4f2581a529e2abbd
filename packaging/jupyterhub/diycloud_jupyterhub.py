"""JupyterHub's spawner hook for diycloud: each user's notebook server starts
inside their allocation.

SystemdSpawner starts the server with ``systemd-run``, not through a PAM
login, so pam_diycloud's session hook never runs for it. This hook does the
same work before the spawn, through ``slicectl prepare`` (the library's one
implementation of it):

- it refuses unless the account may log in now (not disabled, expired,
  locked or unfinished);
- it sizes ``user-UID.slice`` (CPU, memory, tasks, the GPU device
  allow-list) and applies the disk quotas;
- it puts the server in that slice (``SystemdSpawner.slice``), so the
  user's one allocation holds for the server, its kernels and terminals,
  next to their SSH sessions;
- it adds the session's environment (``CUDA_VISIBLE_DEVICES`` of the grant)
  to the server's.

Use it from ``jupyterhub_config.py``::

    from diycloud_jupyterhub import pre_spawn_hook
    c.Spawner.pre_spawn_hook = pre_spawn_hook

docs/jupyterhub.md has the whole setup. Needs Python 3.8 or later and nothing
outside the standard library.
"""

import asyncio
import json
import os

__all__ = ["pre_spawn_hook", "prepare", "PrepareRefused"]

# Long enough for systemd under load; a spawn waits for it.
TIMEOUT_SECONDS = 30
# The slicectl to run, by its absolute path: the packages' one. The hub runs
# as root, and its PATH is whatever its environment says (a unit's
# Environment=, the shell that started it): it is never searched. A slicectl
# installed elsewhere (packaging/install.sh puts it in /usr/local/sbin) is
# named in the hub's own jupyterhub_config.py:
#     import diycloud_jupyterhub
#     diycloud_jupyterhub.SLICECTL = "/usr/local/sbin/slicectl"
SLICECTL = "/usr/sbin/slicectl"


class PrepareRefused(RuntimeError):
    """slicectl refused, or could not apply, the user's allocation."""


async def prepare(unix_name, slicectl=None, timeout=None):
    """Runs ``slicectl --json prepare -- UNIX_NAME`` and returns its
    document: ``{"username", "uid", "slice", "env", "complete", "steps"}``.
    Raises PrepareRefused with the reason when slicectl refuses, fails,
    hangs past ``timeout`` seconds (default TIMEOUT_SECONDS) or answers
    something else."""
    program = slicectl or SLICECTL
    if not isinstance(program, str) or not os.path.isabs(program):
        raise PrepareRefused(
            f"diycloud_jupyterhub.SLICECTL must be an absolute path, not {program!r}: the hub's PATH is not searched"
        )
    timeout = timeout or TIMEOUT_SECONDS
    try:
        proc = await asyncio.create_subprocess_exec(
            program,
            "--json",
            "prepare",
            "--",
            unix_name,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as e:
        raise PrepareRefused(f"cannot run {program}: {e}") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise PrepareRefused(f"slicectl prepare {unix_name} took more than {timeout} s")
    try:
        document = json.loads(out)
    except ValueError:
        document = None
    is_document = isinstance(document, dict)
    if proc.returncode != 0 or (is_document and "error" in document):
        detail = document.get("detail") if is_document else None
        detail = detail or err.decode(errors="replace").strip() or f"exit status {proc.returncode}"
        raise PrepareRefused(f"slicectl prepare {unix_name}: {detail}")
    slice_name = document.get("slice") if is_document else None
    env = document.get("env") if is_document else None
    if (
        not isinstance(slice_name, str)
        or not slice_name.startswith("user-")
        or not slice_name.endswith(".slice")
        or "/" in slice_name
        or not isinstance(env, dict)
    ):
        shown = out[:200].decode(errors="replace").strip()
        raise PrepareRefused(f"slicectl prepare {unix_name}: unexpected answer {shown!r}")
    return document


def _unix_name(spawner):
    """The system account the server runs as: SystemdSpawner's
    username_template applied, else the hub's name."""
    expand = getattr(spawner, "_expand_user_vars", None)
    template = getattr(spawner, "username_template", None)
    if expand is not None and template:
        return expand(template)
    return spawner.user.name


async def pre_spawn_hook(spawner):
    """``c.Spawner.pre_spawn_hook``: prepares the allocation, then starts
    the server in the user's slice with the session's environment. A
    refusal stops the spawn; the user sees a short message, the hub's log
    has the reason."""
    if getattr(spawner, "dynamic_users", False):
        raise PrepareRefused("diycloud needs SystemdSpawner.dynamic_users = False: the server must run as the user's own account")
    name = _unix_name(spawner)
    try:
        document = await prepare(name)
    except PrepareRefused as e:
        spawner.log.error("diycloud: not starting %s's server: %s", name, e)
        raise PrepareRefused("diycloud could not prepare your allocation; ask your administrator") from None
    for step in document.get("steps", []):
        if step.get("result") == "failed":
            spawner.log.warning("diycloud: %s: %s (on_session_error allows it)", name, step.get("error"))
    spawner.slice = document["slice"]
    environment = dict(spawner.environment)
    environment.update({str(k): str(v) for k, v in document["env"].items()})
    spawner.environment = environment
    spawner.log.info(
        "diycloud: %s's server starts in %s%s",
        name,
        document["slice"],
        "".join(f", {k}={v}" for k, v in sorted(document["env"].items())),
    )
