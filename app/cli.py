"""The ``ziti-scim`` command line."""

from __future__ import annotations

import argparse
import logging
import secrets
import sys
from pathlib import Path

import uvicorn

from app.config import Config, ConfigError, PolicyConfig, SourceConfig, hash_token, read_config


def _serve(config: Config, host: str | None, port: int | None) -> int:
    from app.server import create_app

    uvicorn.run(create_app(config), host=host or config.host, port=port or config.port, log_level="info")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    return _serve(read_config(args.config), args.host, args.port)


def demo_config(database: str, token: str) -> Config:
    """Embedded defaults: SQLite in a local file and one generic source."""
    source = SourceConfig(name="demo", kind="generic", token_hashes=(hash_token(token),), policy=PolicyConfig())
    return Config(database_url=database, sources={"demo": source})


def cmd_demo(args: argparse.Namespace) -> int:
    token = args.token or secrets.token_urlsafe(24)
    config = demo_config(args.database, token)
    base = f"http://127.0.0.1:{args.port}/scim/v2"
    print(
        "\nziti-scim demo\n"
        f"  SCIM endpoint : {base}\n"
        f"  bearer token  : {token}\n"
        f"  database      : {Path(args.database).resolve()}\n\n"
        "Try:\n"
        f"  curl -s -H 'Authorization: Bearer {token}' -H 'Content-Type: application/scim+json' \\\n"
        f"       -d '{{\"schemas\":[\"urn:ietf:params:scim:schemas:core:2.0:User\"],\"userName\":\"alice\","
        f"\"emails\":[{{\"value\":\"alice@example.com\",\"primary\":true}}]}}' {base}/Users\n"
        f"  curl -s -H 'Authorization: Bearer {token}' '{base}/Users?filter=userName%20eq%20%22alice%22'\n",
        flush=True,
    )
    return _serve(config, "127.0.0.1", args.port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ziti-scim", description="SCIM 2.0 provisioning bridge for OpenZiti")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the service from a configuration file")
    serve.add_argument("--config", help="TOML configuration (default: $ZITI_SCIM_CONFIG)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(func=cmd_serve)

    demo = commands.add_parser("demo", help="run everything on embedded defaults and print a token")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--token", help="bearer token to accept (default: a random one, printed)")
    demo.add_argument("--database", default="ziti-scim-demo.db", help="SQLite file (default: %(default)s)")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as error:
        print(f"ziti-scim: configuration error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
