"""What ``/readyz`` and ``/metrics`` cost and show.

- The controller check of ``/readyz`` is one authenticated read (``GET /auth-policies/default``), bounded
  to 5 s, whose answer is reused for ``readyz_cache_seconds``; concurrent probes share one call. Probes are
  unauthenticated (a kubelet has no token), so without this each one would be a controller call sharing
  ``max_in_flight`` with provisioning.
- ``/metrics`` requires ``Authorization: Bearer <token>`` when ``metrics_token_sha256`` (or
  ``ZITI_SCIM_METRICS_TOKEN``) is set, and with ``metrics_source_labels = false`` shows sources as
  ``source-1``, ``source-2``… (configuration order) instead of their names.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import time
from collections.abc import Awaitable, Callable, Iterable

from app.config import hash_token

CONTROLLER_TIMEOUT = 5.0


class CachedCheck:
    """A health check whose result is reused for ``ttl`` seconds; concurrent callers await one run."""

    def __init__(self, check: Callable[[], Awaitable[object]], ttl: float) -> None:
        self.check = check
        self.ttl = ttl
        self.result: tuple[float, str] | None = None
        self.lock = asyncio.Lock()

    def _fresh(self) -> str | None:
        if self.result is not None and time.monotonic() - self.result[0] < self.ttl:
            return self.result[1]
        return None

    async def status(self) -> str:
        """``ok`` or ``error: <kind>``."""
        if (cached := self._fresh()) is not None:
            return cached
        async with self.lock:
            if (cached := self._fresh()) is not None:
                return cached
            try:
                await asyncio.wait_for(self.check(), timeout=CONTROLLER_TIMEOUT)
                status = "ok"
            except TimeoutError:
                status = "error: timeout"
            except Exception as error:  # noqa: BLE001 - reported, not raised
                status = f"error: {type(error).__name__}"
            self.result = (time.monotonic(), status)
            return status


def bearer_allowed(authorization: str | None, token_hash: str | None) -> bool:
    """Whether ``authorization`` carries the bearer token of ``token_hash`` (always, when there is none)."""
    if token_hash is None:
        return True
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    return hmac.compare_digest(hash_token(token.strip()), token_hash)


_SOURCE_LABEL = re.compile(rb'source="((?:[^"\\]|\\.)*)"')


def hide_sources(exposition: bytes, sources: Iterable[str]) -> bytes:
    """The Prometheus text with each ``source`` label value replaced by ``source-N``."""
    aliases = {name.encode(): f"source-{i}".encode() for i, name in enumerate(sources, start=1)}

    def alias(match: re.Match[bytes]) -> bytes:
        value = match.group(1)
        return b'source="' + (value if value == b"-" else aliases.get(value, b"source-other")) + b'"'

    return _SOURCE_LABEL.sub(alias, exposition)
