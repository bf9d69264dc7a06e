"""The ``ziti-scim`` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import socket
import sys
from typing import Any

import uvicorn

from app.config import Config, ConfigError, read_config
from app.demo import DEFAULT_PORT, DEFAULT_ZITI_PORT, DEMO_SOURCE, HOST, demo_config, run_demo
from app.diagnostics.cli import register as register_diagnostics

__all__ = ["DEMO_SOURCE", "build_parser", "demo_config", "main"]


def _serve(config: Config, host: str | None, port: int | None, sock: socket.socket | None = None) -> int:
    """Serve until interrupted; ``sock``: a socket already bound (the demo binds its own, see app.demo)."""
    from app.observability import logs
    from app.server import create_app
    from app.serving import uvicorn_options

    logs.configure(json_logs=config.json_logs)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            host=host or config.host,
            port=port or config.port,
            log_config=None,
            access_log=False,
            **uvicorn_options(config.limits),
        )
    )
    server.run(sockets=[sock] if sock is not None else None)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    return _serve(read_config(args.config), args.host, args.port)


def _admin_password(args: argparse.Namespace) -> tuple[str, bool]:
    """From --admin-password, $ZITI_SCIM_EMULATOR_PASSWORD, or a fresh random one (then printed)."""
    given = args.admin_password or os.environ.get("ZITI_SCIM_EMULATOR_PASSWORD")
    return (given, False) if given else (secrets.token_urlsafe(12), True)


def cmd_emulator(args: argparse.Namespace) -> int:
    from ziti_emulator import SpecValidationUnavailable
    from ziti_emulator.runner import build_emulator_server

    password, generated = _admin_password(args)
    try:
        server = build_emulator_server(
            args.host, args.port, admin_password=password, spec_path=args.spec,
            version=args.controller_version,
        )
    except SpecValidationUnavailable as error:
        print(f"ziti-scim: {error}", file=sys.stderr)
        return 1
    print(f"OpenZiti controller emulator on http://{args.host}:{args.port}/edge/management/v1", flush=True)
    print(f"  admin user: admin   password: {password if generated else '(as given)'}", flush=True)
    asyncio.run(server.serve())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    password, _ = _admin_password(args)
    return run_demo(args, password, lambda config, sock: _serve(config, HOST, None, sock))


async def _sync(config: Config, dry_run: bool, delete_orphans: bool = False) -> int:
    from app.reconcile import sync
    from app.reconcile.provisioner import Provisioner
    from app.store.db import Database

    db = Database(config.database_url)
    await db.migrate()
    provisioner = Provisioner(config, db)
    try:
        async with sync.exclusive(db):
            if not dry_run:
                await _pull_webhook_sources(config, db, provisioner)
            return await sync.run(provisioner, dry_run=dry_run, report=print, delete_orphans=delete_orphans)
    finally:
        await provisioner.stop()
        await db.dispose()


async def _pull_webhook_sources(config: Config, db: Any, provisioner: Any) -> None:
    """Sources fed by lossy webhooks (ZITADEL, authentik with an API) are first re-read from the IdP's API."""
    from app.scim.router import ScimRouter
    from app.webhooks.routes import WebhookReceiver

    scim = ScimRouter(config.sources.values(), db, hooks=provisioner.hooks)
    for puller in WebhookReceiver(config, db, scim).pullers():
        report = await puller.run_once()
        print(f"IdP pull: {'; '.join(report.changes) if report else 'failed (see log)'}")


def cmd_sync(args: argparse.Namespace) -> int:
    config = read_config(args.config)
    if not config.ziti.url:
        raise ConfigError("sync needs a [ziti] controller")
    return asyncio.run(_sync(config, args.dry_run, args.delete_orphans))


async def _with_db(config: Config, action: str, args: argparse.Namespace) -> int:
    import json
    import time

    from app.observability import audit
    from app.reconcile import safety
    from app.store.db import Database

    db = Database(config.database_url)
    try:
        await db.migrate()
        if action == "pause":
            await safety.write_setting(db, safety.PAUSED, {"since": time.time()})
            print("provisioning paused: SCIM writes are stored, nothing reaches the controller")
        elif action == "resume":
            released = await safety.resume(db)
            print("provisioning resumed")
            for source, brake in released.items():
                print(f"brake released for source {source} ({brake.get('reason')})")
        else:
            since = time.time() - _duration(args.since) if args.since else None
            rows = await audit.read(db, since=since, user=args.user, limit=args.limit)
            for row in reversed(rows):
                if args.json:
                    print(json.dumps(row))
                else:
                    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(row["at"]))
                    print(
                        f"{stamp}Z {row['source']:<12} {row['action']:<8} {row['outcome']:<8} "
                        f"user={row['user_name'] or row['user_id']} identity={row['identity_id'] or '-'} "
                        f"request={row['request_id'] or '-'} {row['operation'] or ''} "
                        f"{row['error'] or ''}".rstrip()
                    )
        return 0
    finally:
        await db.dispose()


def _duration(text: str) -> float:
    """``90s``, ``15m``, ``2h``, ``7d`` or plain seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except (ValueError, IndexError) as error:
        raise ConfigError(f"--since: {text!r} is not a duration like 15m, 2h or 7d") from error


def cmd_db_action(args: argparse.Namespace) -> int:
    return asyncio.run(_with_db(read_config(args.config), args.command, args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ziti-scim", description="SCIM 2.0 provisioning bridge for OpenZiti"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the service from a configuration file")
    serve.add_argument("--config", help="TOML configuration (default: $ZITI_SCIM_CONFIG)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(func=cmd_serve)

    demo = commands.add_parser("demo", help="run everything on embedded defaults and print a token")
    demo.add_argument(
        "--port", type=int, help=f"SCIM port (default: {DEFAULT_PORT}, or a free one when it is busy)"
    )
    demo.add_argument("--token", help="bearer token to accept (default: a random one, printed)")
    demo.add_argument("--database", default="ziti-scim-demo.db", help="SQLite file (default: %(default)s)")
    demo.add_argument(
        "--ziti-port",
        type=int,
        help=f"controller emulator port (default: {DEFAULT_ZITI_PORT}, or a free one when it is busy)",
    )
    demo.add_argument("--admin-password", help="emulator admin password (default: random, printed)")
    demo.set_defaults(func=cmd_demo)

    emulator = commands.add_parser("emulator", help="run the OpenZiti controller emulator alone")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=1280)
    emulator.add_argument(
        "--admin-password", help="admin password (default: $ZITI_SCIM_EMULATOR_PASSWORD or random)"
    )
    emulator.add_argument("--spec", help="management.yml to validate request bodies against")
    emulator.add_argument(
        "--controller-version",
        choices=["1.6", "1.8", "2.0", "2.0.3"],
        default="2.0.3",
        help="OpenZiti controller release to imitate (default: %(default)s)",
    )
    emulator.set_defaults(func=cmd_emulator)

    sync = commands.add_parser("sync", help="compare every user with its identity and repair drift")
    sync.add_argument("--config", help="TOML configuration (default: $ZITI_SCIM_CONFIG)")
    sync.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    sync.add_argument(
        "--delete-orphans",
        action="store_true",
        help="also remove the proposed orphans (identities of this deployment whose user is unknown), "
        "through the mass-deprovision brake",
    )
    sync.set_defaults(func=cmd_sync)

    for name, text in (
        ("pause", "stop provisioning (SCIM writes are still accepted and stored)"),
        ("resume", "resume provisioning and release the mass-deprovision brake"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("--config", help="TOML configuration (default: $ZITI_SCIM_CONFIG)")
        command.set_defaults(func=cmd_db_action)

    audit = commands.add_parser("audit", help="show what ziti-scim did on the controller")
    audit.add_argument("--config", help="TOML configuration (default: $ZITI_SCIM_CONFIG)")
    audit.add_argument("--since", help="only entries newer than this (15m, 2h, 7d)")
    audit.add_argument("--user", help="SCIM id, userName or identity id")
    audit.add_argument("--limit", type=int, default=200)
    audit.add_argument("--json", action="store_true", help="one JSON object per line")
    audit.set_defaults(func=cmd_db_action)

    register_diagnostics(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as error:
        print(f"ziti-scim: configuration error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C after a graceful shutdown (uvicorn re-raises the signal): the usual status, no traceback.
        return 130


if __name__ == "__main__":
    sys.exit(main())
