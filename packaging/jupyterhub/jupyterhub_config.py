# JupyterHub with diycloud (docs/jupyterhub.md): passwords, lockout and
# account state through pam_diycloud; each user's server started by
# SystemdSpawner inside their allocation (user-UID.slice: CPU, memory,
# tasks, GPUs) by the diycloud hook. Installed as
# /etc/jupyterhub/jupyterhub_config.py; the hub runs as root
# (jupyterhub.service).
import sys

sys.path.insert(0, "/usr/share/diycloud/jupyterhub")
from diycloud_jupyterhub import pre_spawn_hook  # noqa: E402

c = get_config()  # noqa: F821 (JupyterHub defines it)

# Behind nginx for TLS, like the portal; loopback only.
c.JupyterHub.bind_url = "http://127.0.0.1:8000"

# Logins: the jupyterhub PAM service (/etc/pam.d/jupyterhub), pam_diycloud
# first. Only members of diycloud's managed group ([users] group, default
# "diycloud") may use the hub.
c.JupyterHub.authenticator_class = "pam"
c.PAMAuthenticator.service = "jupyterhub"
c.PAMAuthenticator.check_account = True
c.Authenticator.allowed_groups = {"diycloud"}
# No PAM session in the hub's process: pam_systemd would move the hub
# itself into the user's session (and their slice), and the server is not
# in that session anyway. The hook below does the session's work for the
# server. docs/jupyterhub.md says more.
c.PAMAuthenticator.open_sessions = False

# Each server: a transient systemd service of the user's own account, in
# their slice, with their GPUs' environment. The hook refuses an account
# that may not log in now (disabled, expired, locked), whenever the hub
# login was.
c.JupyterHub.spawner_class = "systemd"
c.Spawner.pre_spawn_hook = pre_spawn_hook
# The hook runs the packages' /usr/sbin/slicectl, never one found through
# the hub's PATH. A slicectl elsewhere (install.sh's /usr/local/sbin) is
# named here, by its absolute path:
# import diycloud_jupyterhub
# diycloud_jupyterhub.SLICECTL = "/usr/local/sbin/slicectl"
c.SystemdSpawner.dynamic_users = False
# PrivateDevices would hide the GPUs the slice grants.
c.SystemdSpawner.isolate_devices = False
c.SystemdSpawner.isolate_tmp = True
c.SystemdSpawner.disable_user_sudo = True
# The slice holds the user's limits; per-server limits would only narrow
# them (leave c.Spawner.mem_limit and cpu_limit unset).
