"""JupyterHub's own PAMAuthenticator against pam_diycloud, through real libpam.

pamela loads libpam with ctypes (CDLL(find_library("pam"))), and symbols
looked up on that handle bypass LD_PRELOAD; so find_library is pointed at
pam_wrapper's libpam before jupyterhub.auth is imported. PAM_WRAPPER=1 and
PAM_WRAPPER_SERVICE_DIR come from the environment (see jupyterhub.sh).

Usage: python jupyterhub_pam.py SERVICE USER RIGHT_PASSWORD
"""
import asyncio
import ctypes.util
import sys

_find_library = ctypes.util.find_library
ctypes.util.find_library = lambda name: "libpam_wrapper.so" if name == "pam" else _find_library(name)

from jupyterhub.auth import PAMAuthenticator  # noqa: E402  (must come after the patch)


async def check(service, user, right):
    auth = PAMAuthenticator(service=service, open_sessions=False)
    cases = [
        ("right password accepted", {"username": user, "password": right}, user),
        ("wrong password rejected", {"username": user, "password": right + "x"}, None),
        ("unknown user rejected", {"username": "nobody-here", "password": right}, None),
        ("empty password rejected", {"username": user, "password": ""}, None),
    ]
    passed = failed = 0
    for name, data, expected in cases:
        got = await auth.authenticate(None, data)
        if isinstance(got, dict):
            got = got.get("name")
        if got == expected:
            passed += 1
            print(f"ok   {name}")
        else:
            failed += 1
            print(f"FAIL {name}: expected {expected!r}, got {got!r}")
    print(f"jupyterhub: {passed} passed, {failed} failed")
    return failed == 0


if __name__ == "__main__":
    service, user, right = sys.argv[1:4]
    sys.exit(0 if asyncio.run(check(service, user, right)) else 1)
