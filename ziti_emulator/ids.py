"""Identifier and timestamp formats of the emulated controller.

Implements ``docs/controller-api.md`` §1 "Ids": entity ids are teris-io/shortid strings over the alphabet
``0-9a-zA-Z.-`` (not UUIDs), API-session ids are cuids, API-session tokens are UUIDv4, timestamps are UTC
RFC3339 with milliseconds (``2026-01-02T03:04:05.678Z``).
"""

from __future__ import annotations

import secrets
import string
import uuid
from datetime import UTC, datetime

_SHORTID_ALPHABET = string.digits + string.ascii_letters + ".-"
_CUID_ALPHABET = string.digits + string.ascii_lowercase


def new_id() -> str:
    """A shortid-style entity id such as ``Zk3n.9Xa2``; never starts with ``-`` or ``.``."""
    first = secrets.choice(string.digits + string.ascii_letters)
    return first + "".join(secrets.choice(_SHORTID_ALPHABET) for _ in range(8))


def new_session_id() -> str:
    """A cuid-style id (``c`` + 24 lowercase alphanumerics) as used for API sessions."""
    return "c" + "".join(secrets.choice(_CUID_ALPHABET) for _ in range(24))


def new_token() -> str:
    """An API-session token: a UUIDv4 string."""
    return str(uuid.uuid4())


def format_time(ts: float) -> str:
    """RFC3339 UTC with milliseconds, as go-openapi ``strfmt.DateTime`` renders it."""
    dt = datetime.fromtimestamp(ts, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_time(text: str) -> float:
    """Parse an RFC3339 timestamp (``Z`` or offset) to epoch seconds; ValueError if malformed."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()
