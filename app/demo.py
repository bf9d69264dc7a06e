"""``ziti-scim demo``: the whole service on embedded defaults, with the built-in controller emulator.

Ports: the SCIM port (default 8080) and the emulator port (default 1280, where a real controller usually
listens) are checked before anything starts. A busy *default* port is replaced by a free one, and the
banner says so; a busy port given explicitly (``--port`` / ``--ziti-port``) ends the command with exit
status 1 and one line, never a traceback. The SCIM socket is bound here and handed to uvicorn, so no
other process can take it in between.
"""

from __future__ import annotations

import argparse
import errno
import secrets
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from app.config import Config, PolicyConfig, SourceConfig, ZitiConfig, hash_token

DEMO_SOURCE = "demo"
DEFAULT_PORT = 8080
DEFAULT_ZITI_PORT = 1280
HOST = "127.0.0.1"


class PortBusy(Exception):
    """A port given explicitly on the command line is taken."""


def demo_config(
    database: str, token: str, ziti_url: str | None = None, admin_password: str | None = None
) -> Config:
    """Embedded defaults: SQLite in a local file, one generic source, and the built-in controller emulator.

    The demo source waits up to two seconds for each write to converge (``wait_for_sync``), so that the
    printed curl shows the identity it made; a real source answers at once by default.
    """
    source = SourceConfig(
        name=DEMO_SOURCE,
        kind="generic",
        token_hashes=(hash_token(token),),
        policy=PolicyConfig(),
        options={"wait_for_sync": 2.0},
    )
    ziti = ZitiConfig(url=ziti_url, username="admin", password=admin_password)
    return Config(database_url=database, sources={DEMO_SOURCE: source}, ziti=ziti)


def bind(port: int, *, explicit: bool, what: str) -> socket.socket:
    """A listening-ready socket on ``HOST:port``; a free port instead when ``port`` is a busy default."""
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose ``proto`` says TCP
    # (``base_events._set_nodelay``); without it Nagle holds each response body for the client's
    # delayed ACK, about 40 ms a request on Linux.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
    try:
        sock.bind((HOST, port))
    except OSError as error:
        if error.errno not in (errno.EADDRINUSE, errno.EACCES) or explicit:
            sock.close()
            raise PortBusy(f"{what} port {port} on {HOST} is not available ({error.strerror})") from None
        sock.bind((HOST, 0))
    return sock


def _free_port(port: int, *, explicit: bool, what: str) -> int:
    """Like :func:`bind` for a server that binds its own socket: the port to pass it."""
    sock = bind(port, explicit=explicit, what=what)
    try:
        return int(sock.getsockname()[1])
    finally:
        sock.close()


def banner(base: str, token: str, database: str, ziti: str, password: str) -> str:
    return (
        "\nziti-scim demo (SQLite + the built-in OpenZiti controller emulator)\n"
        f"  SCIM endpoint       : {base}\n"
        f"  bearer token        : {token}\n"
        f"  database            : {Path(database).resolve()}\n"
        f"  controller emulator : {ziti}  (admin / {password})\n\n"
        "Create a user; it becomes an OpenZiti identity whose externalId is its primary email:\n"
        f"  curl -s -H 'Authorization: Bearer {token}' -H 'Content-Type: application/scim+json' \\\n"
        f'       -d \'{{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"alice",'
        f'"emails":[{{"value":"alice@example.com","primary":true}}]}}\' {base}/Users\n'
        "See the identity on the controller:\n"
        f"  S=$(curl -s -H 'Content-Type: application/json' \\\n"
        f'       -d \'{{"username":"admin","password":"{password}"}}\' \\\n'
        f"       '{ziti}/authenticate?method=password' \\\n"
        '       | python3 -c \'import sys,json;print(json.load(sys.stdin)["data"]["token"])\')\n'
        f"  curl -s -H \"zt-session: $S\" '{ziti}/identities?filter=externalId%3D%22alice@example.com%22'\n"
        "A user without an email is stored too and shows provisioningState \"skipped\" until one arrives.\n"
    )


def run_demo(
    args: argparse.Namespace, password: str, serve: Callable[[Config, socket.socket], int]
) -> int:
    """Check the ports, start the emulator, print the banner, then ``serve`` SCIM on the bound socket."""
    from ziti_emulator import EmulatorThread, create_emulator_app

    token = args.token or secrets.token_urlsafe(24)
    scim_wanted = DEFAULT_PORT if args.port is None else args.port
    ziti_wanted = DEFAULT_ZITI_PORT if args.ziti_port is None else args.ziti_port
    try:
        scim_socket = bind(scim_wanted, explicit=args.port is not None, what="SCIM")
        try:
            ziti_port = _free_port(ziti_wanted, explicit=args.ziti_port is not None, what="emulator")
        except PortBusy:
            scim_socket.close()
            raise
    except PortBusy as error:
        print(f"ziti-scim: {error}", file=sys.stderr)
        return 1
    try:
        emulator = EmulatorThread(create_emulator_app(admin_password=password), port=ziti_port).start()
    except (RuntimeError, TimeoutError):
        scim_socket.close()
        print(f"ziti-scim: the controller emulator could not listen on {HOST}:{ziti_port}", file=sys.stderr)
        return 1
    config = demo_config(args.database, token, emulator.url, password)
    port = int(scim_socket.getsockname()[1])
    for what, wanted, got in (("SCIM", scim_wanted, port), ("emulator", ziti_wanted, ziti_port)):
        if got != wanted and wanted != 0:
            print(f"port {wanted} is busy: {what} on port {got} instead", flush=True)
    base = f"http://{HOST}:{port}/scim/v2"
    print(banner(base, token, args.database, emulator.management_url, password), flush=True)
    try:
        return serve(config, scim_socket)
    finally:
        scim_socket.close()
        emulator.stop()
