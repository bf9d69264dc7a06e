"""The ``doctor`` and ``explain-token`` commands; :func:`register` adds them to ``ziti-scim``'s parser.

Exit codes: ``doctor`` 0 (no error; warnings allowed), 1 (errors), 2 (unusable configuration).
``explain-token`` 0 (the login would succeed), 1 (it would fail), 2 (cannot tell: bad input, configuration
or controller unreachable).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from app.config import ConfigError, read_config
from app.diagnostics.doctor import run_doctor
from app.diagnostics.explain import explain_token
from app.diagnostics.render import render_doctor, render_explanation
from app.diagnostics.token import TokenError


def _print(payload: Any, as_json: bool, text: str) -> None:
    print(json.dumps(payload, indent=2, default=str) if as_json else text, flush=True)


def cmd_doctor(args: argparse.Namespace) -> int:
    config = read_config(args.config)
    report = asyncio.run(run_doctor(config))
    _print(report.as_dict(), args.json, render_doctor(report))
    return report.exit_code


def _read_token(argument: str) -> str:
    token = sys.stdin.read() if argument == "-" else argument
    return token.strip()


def cmd_explain_token(args: argparse.Namespace) -> int:
    config = read_config(args.config)
    token = _read_token(args.token)
    if not token:
        print("ziti-scim: explain-token: no token given", file=sys.stderr)
        return 2
    try:
        explanation = asyncio.run(explain_token(token, config))
    except TokenError as error:
        print(f"ziti-scim: explain-token: {error}", file=sys.stderr)
        return 2
    _print(explanation.as_dict(), args.json, render_explanation(explanation))
    return explanation.exit_code


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``doctor`` and ``explain-token`` to the ``ziti-scim`` sub-command parser."""
    doctor = subparsers.add_parser(
        "doctor",
        help="check the controller, ext-jwt signers, auth policies and role attributes of every source",
        description="Check that every source's users can log in with their IdP token; print each problem "
        "with its fix. Exit 1 on errors (warnings do not fail).",
    )
    doctor.add_argument("--config", help="TOML configuration (default: $ZITI_SCIM_CONFIG)")
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")
    doctor.set_defaults(func=cmd_doctor)

    explain = subparsers.add_parser(
        "explain-token",
        help="explain why an ext-jwt login with an IdP token would succeed or fail",
        description="Decode an IdP JWT, verify it when the signer's JWKS is reachable, and explain the "
        "controller's decision in plain words. Prefer '-' (stdin): a token on the command line is visible "
        "to other users of the host. Exit 0 if the login would succeed, 1 if it would fail, 2 if unknown.",
    )
    explain.add_argument("token", help="the JWT, or - to read it from stdin")
    explain.add_argument("--config", help="TOML configuration (default: $ZITI_SCIM_CONFIG)")
    explain.add_argument("--json", action="store_true", help="print the explanation as JSON")
    explain.set_defaults(func=cmd_explain_token)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m app.diagnostics``) until ``ziti-scim`` wires :func:`register`."""
    parser = argparse.ArgumentParser(prog="ziti-scim")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as error:
        print(f"ziti-scim: configuration error: {error}", file=sys.stderr)
        return 2
