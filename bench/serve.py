"""Subprocess entry point: run one server under test under uvicorn on 127.0.0.1.

    python -m bench.serve ziti --port P --db URL [--ziti-url U] [--source-kind generic] [--max-in-flight 8]
    python -m bench.serve reference --port P
    python -m bench.serve emulator --port P

Access logs are off for every server (the same for all, so that logging is not what is measured). The
event loop and HTTP parser are uvicorn's choice (``auto``: uvloop and httptools when installed) unless
``ZITI_SCIM_BENCH_LOOP`` / ``ZITI_SCIM_BENCH_HTTP`` name one (``asyncio``, ``uvloop`` / ``h11``,
``httptools``), for every server alike. ``ZITI_SCIM_BENCH_OPTIONS`` (a JSON object) adds source options to
ziti-scim's, to try one (e.g. ``{"create_settle": 0}``); the bench's tables do not say so: note it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from typing import Any, Literal

import uvicorn

from bench.common import EMULATOR_PASSWORD, SOURCE, TOKEN


def bench_options() -> dict[str, Any]:
    """Source options to try (``ZITI_SCIM_BENCH_OPTIONS``, a JSON object, e.g. ``{"create_settle": 0}``)."""
    raw = os.environ.get("ZITI_SCIM_BENCH_OPTIONS", "")
    options = json.loads(raw) if raw else {}
    if not isinstance(options, dict):
        raise SystemExit("ZITI_SCIM_BENCH_OPTIONS must be a JSON object of source options")
    return options


def ziti_app(args: argparse.Namespace) -> Any:
    from app.config import Config, PolicyConfig, SourceConfig, ZitiConfig, hash_token
    from app.server import create_app

    source = SourceConfig(
        name=SOURCE,
        kind=args.source_kind,
        token_hashes=(hash_token(TOKEN),),
        policy=PolicyConfig(),
        mapping={"preset": args.source_kind},
        # The per-source rate limit (default 100 req/s) is off: the bench measures the server.
        options={"rate_limit": 0, **bench_options()},
    )
    ziti = ZitiConfig()
    if args.ziti_url:
        ziti = ZitiConfig(
            url=args.ziti_url,
            username="admin",
            password=EMULATOR_PASSWORD,
            max_in_flight=args.max_in_flight,
        )
    config = Config(database_url=args.db, sources={SOURCE: source}, ziti=ziti)
    return create_app(config)


def reference_app() -> Any:
    """scim2-server's own in-memory reference server, as its documentation assembles it."""
    from scim2_server.applications.asgi import ASGIApplication
    from scim2_server.memory import AsyncInMemoryStorage
    from scim2_server.utils import load_default_provider

    return ASGIApplication(AsyncInMemoryStorage(), load_default_provider())


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.serve")
    parser.add_argument("server", choices=["ziti", "reference", "emulator"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", default="bench.db")
    parser.add_argument("--ziti-url")
    parser.add_argument("--source-kind", default="generic")
    parser.add_argument("--max-in-flight", type=int, default=8)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    lifespan: Literal["on", "off"] = "on"
    if args.server == "ziti":
        app = ziti_app(args)
    elif args.server == "reference":
        app = reference_app()
    else:
        from bench.emulator_app import BenchEmulator

        app = BenchEmulator(EMULATOR_PASSWORD)
        lifespan = "off"
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan=lifespan,
        loop=os.environ.get("ZITI_SCIM_BENCH_LOOP", "auto"),
        http=os.environ.get("ZITI_SCIM_BENCH_HTTP", "auto"),
    )


if __name__ == "__main__":
    main()
