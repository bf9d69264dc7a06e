"""Retry policy for controller calls: exponential backoff with full jitter, Retry-After, budgets.

Backoff follows the "full jitter" scheme (AWS Architecture Blog, "Exponential Backoff And Jitter"):
``sleep = uniform(0, min(max_delay, base_delay * 2 ** (retry - 1)))``. A ``Retry-After`` header
(RFC 9110 §10.2.3: delay-seconds or HTTP-date) replaces the computed delay.

Which failures are retried, and for which requests, is decided by :func:`status_is_retryable` and
:func:`transport_error_is_retryable`:

* connect-phase failures (``ConnectError``, ``ConnectTimeout``, ``PoolTimeout``): the request never left
  this process, so every request may be retried, including an identity create;
* other transport failures (read/write timeouts, dropped connections): only idempotent requests;
* 429 and 503: the controller refused before applying (command rate limiter full, no raft leader;
  controller-api.md §8), so every request may be retried;
* 502 and 504: a gateway cannot tell whether the controller applied the request: idempotent only;
* TLS failures are configuration errors and are never retried.
"""

from __future__ import annotations

import email.utils
import math
import random
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

__all__ = [
    "RetryPolicy",
    "backoff_delay",
    "parse_retry_after",
    "status_is_retryable",
    "transport_error_is_retryable",
    "is_tls_error",
    "request_certainly_not_sent",
    "RETRYABLE_STATUSES",
]

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
# Statuses the controller itself returns before applying a command.
_REFUSED_BEFORE_PROCESSING = frozenset({429, 503})
_NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounds for retrying one logical request.

    ``max_attempts`` counts HTTP attempts (1 = no retry). ``total_deadline`` (seconds) bounds the whole
    logical request including sleeps; a retry whose sleep would cross it is not made.
    ``max_retry_after`` caps how long a server-provided Retry-After is honoured.
    """

    max_attempts: int = 5
    base_delay: float = 0.25
    max_delay: float = 8.0
    total_deadline: float = 60.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be >= 1")
        for name in ("base_delay", "max_delay", "total_deadline", "max_retry_after"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"RetryPolicy.{name} must be a finite number >= 0")


def backoff_delay(policy: RetryPolicy, retry_number: int, rng: random.Random | None = None) -> float:
    """Full-jitter delay before retry number ``retry_number`` (1 for the first retry)."""
    exponent = min(max(retry_number - 1, 0), 62)
    cap = min(policy.max_delay, policy.base_delay * (2**exponent))
    return (rng or random).uniform(0.0, cap)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or HTTP-date); None if absent/invalid."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def status_is_retryable(status: int, *, idempotent: bool) -> bool:
    """True if a response with ``status`` may be retried for a request of this kind."""
    if status in _REFUSED_BEFORE_PROCESSING:
        return True
    return idempotent and status in RETRYABLE_STATUSES


def is_tls_error(exc: BaseException) -> bool:
    """True if ``exc`` (or anything in its cause chain) is an :class:`ssl.SSLError`."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def transport_error_is_retryable(exc: httpx.TransportError, *, idempotent: bool) -> bool:
    """True if the transport failure may be retried for a request of this kind."""
    if is_tls_error(exc) or isinstance(exc, httpx.UnsupportedProtocol | httpx.ProxyError):
        return False
    if isinstance(exc, _NOT_SENT_ERRORS):
        return True
    return idempotent and isinstance(
        exc, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError
    )


def request_certainly_not_sent(exc: httpx.TransportError) -> bool:
    """True if the failure happened before any byte of the request reached the server."""
    return isinstance(exc, _NOT_SENT_ERRORS) or is_tls_error(exc)
