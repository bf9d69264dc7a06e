"""Exceptions raised by the webhook verifiers and parsers.

Both carry a private ``reason`` meant for logs and a ``public_message`` that is safe to send back to the
caller. Reasons never contain secrets, signatures or header values: they only name *what* failed.
"""

from __future__ import annotations

__all__ = ["IdpFetchError", "WebhookError", "WebhookInvalid", "WebhookRejected"]


class WebhookError(Exception):
    """Base class: ``status`` is the HTTP status the route should answer with."""

    status: int
    reason: str
    public_message: str

    def __init__(self, reason: str, *, status: int, public_message: str) -> None:
        super().__init__(public_message)
        self.reason = reason
        self.status = status
        self.public_message = public_message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, reason={self.reason!r})"


class WebhookRejected(WebhookError):
    """Authenticity check failed: bad/missing signature or shared secret, stale timestamp, replay.

    The route answers ``status`` (401 by default) with ``public_message`` only; ``reason`` goes to the log.
    """

    def __init__(self, reason: str, *, status: int = 401) -> None:
        super().__init__(reason, status=status, public_message="webhook rejected")


class WebhookInvalid(WebhookError):
    """The delivery is authentic (or not yet checked) but its body or query cannot be understood (400).

    ``reason`` is written by this package and describes the structural problem; it is safe to return.
    """

    def __init__(self, reason: str, *, status: int = 400) -> None:
        super().__init__(reason, status=status, public_message=reason)


class IdpFetchError(Exception):
    """The IdP API could not be read (network, auth, unexpected answer). Retry later / reconcile.

    The message names the failure class only; it never contains the API token or response bodies.
    """
