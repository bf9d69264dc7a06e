"""Credentials and the ``zt-session`` API session of the Edge Management API.

``POST /authenticate?method=password|cert`` returns a token in ``data.token`` and in the ``zt-session``
response header; it is sent back as the ``zt-session`` request header (edge-api ``securityDefinitions.
ztSession``; controller-api.md §2.1-2.2). Sessions expire after ``edge.api.sessionTimeout`` (default 30 min)
of inactivity and there is no refresh endpoint (§2.5). OIDC access tokens (see ``oidc.py``) instead expire
at a fixed time (``AuthResult.absolute``): they are renewed a minute before, whatever the activity.
:class:`ZitiSession`:

* reuses one token for all requests;
* re-authenticates proactively when the token has been idle longer than ``idle_reauth_after``;
* re-authenticates on 401, once per stale token, under an :class:`asyncio.Lock`, so N concurrent
  requests that all hit a 401 cause exactly one ``/authenticate`` call.

The token and the password are never logged nor shown by ``repr``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = [
    "PasswordCredentials",
    "CertCredentials",
    "Credentials",
    "AuthResult",
    "ZitiSession",
    "DEFAULT_IDLE_REAUTH_AFTER",
]

# Controller default sessionTimeout is 30 min (sliding); renew a minute early.
DEFAULT_IDLE_REAUTH_AFTER = 29 * 60.0


@dataclass(frozen=True, slots=True)
class PasswordCredentials:
    """``method=password`` (updb). The password comes from the caller's config (env var or file)."""

    method: ClassVar[str] = "password"
    username: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        if not self.username:
            raise ValueError("Ziti username must not be empty")
        if not self.password:
            raise ValueError("Ziti password must not be empty")

    def auth_body(self) -> dict[str, Any]:
        return {"username": self.username, "password": self.password}


@dataclass(frozen=True, slots=True)
class CertCredentials:
    """``method=cert``: the identity's client certificate is presented in the TLS handshake."""

    method: ClassVar[str] = "cert"
    cert_file: str | os.PathLike[str]
    key_file: str | os.PathLike[str]
    key_password: str | None = field(default=None, repr=False)

    def auth_body(self) -> dict[str, Any]:
        return {}


Credentials = PasswordCredentials | CertCredentials


@dataclass(frozen=True, slots=True)
class AuthResult:
    """Outcome of one ``/authenticate`` call."""

    token: str = field(repr=False)
    expiration_seconds: float | None = None
    absolute: bool = False  # OIDC access token: expires at a fixed time, use does not extend it


class ZitiSession:
    """Thread-unsafe (single event loop) holder of the current API-session token."""

    def __init__(
        self,
        *,
        idle_reauth_after: float = DEFAULT_IDLE_REAUTH_AFTER,
        clock: Callable[[], float],
    ) -> None:
        if idle_reauth_after <= 0:
            raise ValueError("idle_reauth_after must be > 0 seconds")
        self._configured_idle = idle_reauth_after
        self._idle_after = idle_reauth_after
        self._clock = clock
        self._token: str | None = None
        self._last_used = 0.0
        self._absolute = False
        self._lock = asyncio.Lock()
        self.authentications = 0

    def __repr__(self) -> str:
        return f"ZitiSession(active={self._token is not None}, authentications={self.authentications})"

    @property
    def has_token(self) -> bool:
        return self._token is not None

    def usable_token(self) -> str | None:
        """The current token, or None if there is none or it has been idle too long."""
        if self._token is None or self._clock() - self._last_used > self._idle_after:
            return None
        return self._token

    def touch(self, token: str) -> None:
        """Record controller activity on ``token`` (every request slides a legacy session's expiry)."""
        if token == self._token and not self._absolute:
            self._last_used = self._clock()

    def clear(self) -> str | None:
        """Forget the token (after logout); returns it so the caller can log out with it."""
        token, self._token = self._token, None
        return token

    async def obtain(
        self,
        authenticate: Callable[[], Awaitable[AuthResult]],
        *,
        stale: str | None = None,
    ) -> str:
        """Return a usable token, authenticating at most once for all concurrent callers.

        ``stale`` is the token a caller just got a 401 with. If another coroutine already replaced it
        while this one waited for the lock, the replacement is returned without a new ``/authenticate``.
        """
        async with self._lock:
            current = self.usable_token()
            if current is not None and current != stale:
                return current
            result = await authenticate()
            self._token = result.token
            self._last_used = self._clock()
            self._absolute = result.absolute
            self._idle_after = self._configured_idle
            if result.expiration_seconds is not None and result.expiration_seconds > 0:
                # Honour a controller configured with a shorter sessionTimeout than the default.
                early = max(result.expiration_seconds - 60.0, result.expiration_seconds / 2)
                self._idle_after = min(self._configured_idle, early)
            self.authentications += 1
            return result.token
