"""The JupyterHub checks' client, run in the test VM with the hub's Python
(/opt/jupyterhub/bin/python: requests and tornado come with JupyterHub).

  jupyterhub_client.py login USER PASSWORD
      Logs in through the hub's login form, as a browser does. Prints
      "accepted" (and waits until the user's server is ready) or
      "refused HTTP-STATUS".
  jupyterhub_client.py start USER
      Asks the hub's API to start USER's server (as an admin would) and
      prints "started", "refused" (the spawn failed) or "still pending".
  jupyterhub_client.py run USER COMMAND
      Runs COMMAND in a new terminal of USER's server (the server's own
      terminal, through the hub's proxy) and prints its exit status and
      last output line as "status N: LINE".

The hub is at $HUB_URL (default http://127.0.0.1:8000); `run` and the wait
for the server use the API token $HUB_TOKEN of a test service that may
access servers.
"""

import json
import os
import re
import sys
import time

import requests
from tornado import ioloop
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

HUB = os.environ.get("HUB_URL", "http://127.0.0.1:8000")
# The guest is emulated (qemu TCG): a server takes tens of seconds to start.
SERVER_TIMEOUT = 240
COMMAND_TIMEOUT = 180


def api(path, method="GET", **kwargs):
    headers = {"Authorization": "token " + os.environ["HUB_TOKEN"]}
    response = requests.request(method, HUB + path, headers=headers, timeout=60, **kwargs)
    response.raise_for_status()
    return response.json() if response.content else None


def login(user, password):
    session = requests.Session()
    form = session.get(HUB + "/hub/login", timeout=60)
    xsrf = re.search(r'name="_xsrf"[^>]*value="([^"]+)"', form.text)
    data = {"username": user, "password": password}
    if xsrf:
        data["_xsrf"] = xsrf.group(1)
    response = session.post(HUB + "/hub/login?next=", data=data, allow_redirects=False, timeout=120)
    if response.status_code != 302:
        print(f"refused {response.status_code}")
        return
    # What a browser does next: the hub sends it on to spawn the server.
    session.get(HUB + "/hub/spawn", timeout=120)
    deadline = time.monotonic() + SERVER_TIMEOUT
    while time.monotonic() < deadline:
        server = api(f"/hub/api/users/{user}").get("servers", {}).get("")
        if server and server.get("ready"):
            print("accepted")
            return
        time.sleep(2)
    print(f"accepted, but the server was not ready after {SERVER_TIMEOUT} s: {server}")


def start(user):
    headers = {"Authorization": "token " + os.environ["HUB_TOKEN"]}
    response = requests.post(HUB + f"/hub/api/users/{user}/server", headers=headers, timeout=120)
    if response.status_code >= 400:
        print("refused")
        return
    deadline = time.monotonic() + SERVER_TIMEOUT
    while time.monotonic() < deadline:
        server = api(f"/hub/api/users/{user}").get("servers", {}).get("")
        if server and server.get("ready"):
            print("started")
            return
        if not server or not server.get("pending"):
            print("refused")
            return
        time.sleep(2)
    print("still pending")


def run(user, command):
    token = os.environ["HUB_TOKEN"]
    terminal = api(f"/user/{user}/api/terminals", method="POST", json={})
    ws_url = HUB.replace("http", "ws", 1) + f"/user/{user}/terminals/websocket/{terminal['name']}"

    async def talk():
        connection = await websocket_connect(
            HTTPRequest(ws_url, headers={"Authorization": "token " + token}, connect_timeout=60)
        )
        # The marker is split in the typed line, so only the output has it whole.
        connection.write_message(json.dumps(["stdin", f'{command}; echo "DIYCLOUD-""STATUS=$?"\r']))
        output = ""
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while time.monotonic() < deadline:
            message = await connection.read_message()
            if message is None:
                break
            kind, *rest = json.loads(message)
            if kind == "stdout":
                output += rest[0]
                found = re.search(r"DIYCLOUD-STATUS=(\d+)", output)
                if found:
                    lines = [l.strip() for l in output[: found.start()].splitlines() if l.strip()]
                    connection.close()
                    return f"status {found.group(1)}: {lines[-1] if lines else ''}"
        connection.close()
        return "no status: " + output[-300:].replace("\r", " ").replace("\n", " ")

    try:
        print(ioloop.IOLoop.current().run_sync(talk, timeout=COMMAND_TIMEOUT + 30))
    finally:
        api(f"/user/{user}/api/terminals/{terminal['name']}", method="DELETE")


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "login":
        login(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "start":
        start(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "run":
        run(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
