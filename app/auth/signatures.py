"""Shared-secret checks of webhook deliveries: configured secrets, HMAC signatures, timestamp windows.

The IdP verifiers (``app/idp/<kind>/webhook.py``) parse their own headers and bodies and call these
primitives, so that every secret is compared the same way:

* every comparison is constant-time (``hmac.compare_digest``), and every candidate is compared with
  every accepted value (no early exit that would tell which one came close);
* several secrets may be configured at once, so that a rotation can add the new one before removing
  the old one; an empty secret is a configuration error, never a secret that matches an empty value;
* a signed timestamp is accepted inside a window of ``max_age`` seconds in the past and ``skew`` seconds
  in the future (ZITADEL ``pkg/actions/signing.go`` uses 300 s both ways).

Nothing here knows HTTP or the webhook error types: a check returns a verdict, the caller picks the
answer (401, or an acknowledged ``problem``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from typing import Any, Literal

__all__ = ["Digest", "constant_time_in", "hmac_hex", "hmac_matches", "require_secrets", "timestamp_outside"]

#: A hashlib constructor (``hashlib.sha256``, ``hashlib.sha512``...), as ``hmac.new`` accepts it.
Digest = Callable[..., Any]


def require_secrets(secrets: Sequence[str] | str, what: str) -> tuple[bytes, ...]:
    """Validate configured secrets (several allowed for rotation) and encode them as UTF-8."""
    if isinstance(secrets, str):
        secrets = (secrets,)
    encoded = tuple(s.encode("utf-8") for s in secrets if s)
    if not encoded or len(encoded) != len(secrets):
        raise ValueError(f"{what}: at least one non-empty secret is required and none may be empty")
    return encoded


def constant_time_in(candidate: bytes, accepted: Sequence[bytes]) -> bool:
    """True if ``candidate`` equals one of ``accepted``; every comparison is done, in constant time.

    Values are hashed first so that the comparison time does not depend on their lengths either.
    """
    probe = hashlib.sha256(candidate).digest()
    found = False
    for value in accepted:
        found |= hmac.compare_digest(probe, hashlib.sha256(value).digest())
    return found


def hmac_hex(key: bytes, message: bytes, digest: Digest = hashlib.sha256) -> str:
    """Lower-case hex HMAC (RFC 2104) of ``message`` under ``key``."""
    return hmac.new(key, message, digest).hexdigest()


def hmac_matches(
    candidates: Sequence[bytes], keys: Sequence[bytes], message: bytes, digest: Digest = hashlib.sha256
) -> bool:
    """True if one of the presented hex signatures is the HMAC of ``message`` under one of ``keys``.

    ``candidates`` are compared as given (the caller lower-cases them); every candidate is compared with
    every key's HMAC, in constant time.
    """
    expected = [hmac_hex(key, message, digest).encode() for key in keys]
    matched = False
    for candidate in candidates:
        for value in expected:
            matched |= hmac.compare_digest(candidate, value)
    return matched


def timestamp_outside(
    at: float, now: float, *, max_age: float | None, skew: float
) -> Literal["too old", "in the future"] | None:
    """Where a signed timestamp ``at`` lies against ``now``: ``None`` inside the window.

    ``"too old"`` when it is more than ``max_age`` seconds in the past (``None``: no age limit),
    ``"in the future"`` when it is more than ``skew`` seconds ahead.
    """
    if max_age is not None and now - at > max_age:
        return "too old"
    if at - now > skew:
        return "in the future"
    return None
