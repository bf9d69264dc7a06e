"""Typed exceptions for the OpenZiti Edge Management API client.

The controller answers errors with the envelope
``{"error": {"code", "message", "requestId", "cause": {...}}, "meta": {...}}``
(edge-api ``apiError`` / ``apiErrorCause``; built by ``controller/response/responder.go toRestModel``,
codes in ``controller/apierror/messages.go``; ``docs/controller-api.md`` §1 "Errors").
``cause`` is either a field error ``{"field", "reason", "value"}`` or a nested error
``{"code", "message"}``. :func:`error_from_response` maps status + envelope onto the hierarchy below::

    ZitiError
    ├── ZitiBadRequest            4xx not covered below, and the 6xx go-openapi validation statuses
    │   └── ZitiValidationError   code COULD_NOT_VALIDATE (.field/.reason/.value)
    │       └── ZitiDuplicate     "duplicate value ... in unique index" (name / externalId)
    ├── ZitiUnauthorized          401/403 (the controller uses 401 for "no permission" too)
    │   └── ZitiAuthenticationFailed   POST /authenticate refused (INVALID_AUTH)
    ├── ZitiNotFound              404
    ├── ZitiConflict              409 (e.g. CAN_NOT_DELETE_REFERENCED_ENTITY)
    ├── ZitiRateLimited           429 still returned after the retries (.retry_after)
    ├── ZitiUnavailable           transport failure or 502/503/504 after the retries
    │   ├── ZitiServerError       any other 5xx (500 UNHANDLED, 501 ...)
    │   ├── ZitiTLSError          TLS handshake / certificate verification failed (never retried)
    │   └── ZitiOutcomeUnknown    a non-idempotent request may or may not have been applied
    └── ZitiProtocolError         unparseable / unexpected response (bad JSON, redirect, no "data")

A duplicate ``externalId`` on PUT/PATCH comes back as 500 UNHANDLED whose nested cause carries the
boltz "duplicate value" text (the update path does not map unique-index errors,
``controller/storage/boltz/indexes.go``; ``docs/controller-api.md`` §3.7); it is mapped to
:class:`ZitiDuplicate` as well, with ``field=None`` because that message does not name the field.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "ZitiError",
    "ZitiBadRequest",
    "ZitiValidationError",
    "ZitiDuplicate",
    "ZitiUnauthorized",
    "ZitiAuthenticationFailed",
    "ZitiNotFound",
    "ZitiConflict",
    "ZitiRateLimited",
    "ZitiUnavailable",
    "ZitiServerError",
    "ZitiTLSError",
    "ZitiOutcomeUnknown",
    "ZitiProtocolError",
    "error_from_response",
    "parse_error_envelope",
]

_SNIPPET_CHARS = 200


class ZitiError(Exception):
    """Base class of every error raised by :class:`app.ziti.client.ZitiClient`.

    Attributes mirror the controller's error envelope; all are optional because transport errors
    and non-JSON bodies have none of them.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        cause: dict[str, Any] | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id
        self.cause = cause
        self.method = method
        self.path = path

    def __str__(self) -> str:
        parts: list[str] = []
        if self.method and self.path:
            parts.append(f"{self.method} {self.path}")
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.code:
            parts.append(f"code={self.code}")
        field = self.cause.get("field") if isinstance(self.cause, dict) else None
        if field:
            parts.append(f"field={field}")
        if self.request_id:
            parts.append(f"requestId={self.request_id}")
        return f"{self.message} ({', '.join(parts)})" if parts else self.message


class ZitiBadRequest(ZitiError):
    """The controller rejected the request (4xx other than 401/403/404/409/429, or a 6xx status)."""


class ZitiValidationError(ZitiBadRequest):
    """``COULD_NOT_VALIDATE``: a body or field failed validation.

    ``field``/``reason``/``value`` come from the envelope's ``cause``.
    """

    @property
    def field(self) -> str | None:
        return _str_or_none(self.cause.get("field")) if self.cause else None

    @property
    def reason(self) -> str | None:
        if not self.cause:
            return None
        return _str_or_none(self.cause.get("reason")) or _str_or_none(self.cause.get("message"))

    @property
    def value(self) -> str | None:
        # The controller renders the value with Go's %v, so it is a string on the wire.
        if not self.cause or self.cause.get("value") is None:
            return None
        return str(self.cause.get("value"))


class ZitiDuplicate(ZitiValidationError):
    """A unique index refused the value (``field`` is ``name`` or ``externalId``; None if unknown)."""


class ZitiUnauthorized(ZitiError):
    """401: no/expired session after one re-authentication, or the identity lacks the permission."""


class ZitiAuthenticationFailed(ZitiUnauthorized):
    """``POST /authenticate`` was refused (wrong password, unknown/disabled identity, bad certificate)."""


class ZitiNotFound(ZitiError):
    """404 ``NOT_FOUND``: unknown id (also a create that references an unknown ``authPolicyId``)."""


class ZitiConflict(ZitiError):
    """409, e.g. ``CAN_NOT_DELETE_REFERENCED_ENTITY``."""


class ZitiRateLimited(ZitiError):
    """429 ``SERVER_TOO_MANY_REQUESTS`` still returned when the retry budget ran out."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ZitiUnavailable(ZitiError):
    """The controller could not be reached, or answered 5xx, after the retries."""


class ZitiServerError(ZitiUnavailable):
    """A 5xx that is not a gateway/availability status (typically 500 ``UNHANDLED``); not retried."""


class ZitiTLSError(ZitiUnavailable):
    """TLS failed (unknown CA, wrong host name, client certificate refused). Configuration, not retried."""


class ZitiOutcomeUnknown(ZitiUnavailable):
    """A non-idempotent request (identity create) failed after it may have reached the controller.

    The entity may or may not exist now. Callers must look it up (by ``externalId`` or tags) before
    trying to create it again; see :meth:`app.ziti.client.ZitiClient.create_identity`.
    """


class ZitiProtocolError(ZitiError):
    """The response could not be understood (invalid JSON, missing envelope, unexpected status)."""


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _is_duplicate_text(text: str | None) -> bool:
    return bool(text) and "duplicate value" in str(text) and "unique index" in str(text)


def _snippet(body: bytes) -> str:
    text = body[:_SNIPPET_CHARS].decode("utf-8", errors="replace")
    return "".join(ch if ch.isprintable() else " " for ch in text).strip()


def parse_error_envelope(body: bytes) -> dict[str, Any] | None:
    """Return the ``error`` object of an error envelope, or None if the body is not one."""
    if not body.strip():
        return None
    try:
        decoded = json.loads(body)
    except ValueError:
        return None
    if not isinstance(decoded, dict):
        return None
    error = decoded.get("error")
    return error if isinstance(error, dict) else None


def error_from_response(
    status: int,
    body: bytes,
    *,
    method: str | None = None,
    path: str | None = None,
    retry_after: float | None = None,
) -> ZitiError:
    """Build the typed exception for an error response (any status >= 400, including 6xx).

    Only the envelope is read; the body is never logged. A body that is not an envelope (HTML from a
    proxy, plain text) still yields the status-based class with a short printable snippet as message.
    """
    error = parse_error_envelope(body)
    code: str | None = None
    request_id: str | None = None
    cause: dict[str, Any] | None = None
    if error is not None:
        code = _str_or_none(error.get("code"))
        message = _str_or_none(error.get("message")) or f"controller returned HTTP {status}"
        request_id = _str_or_none(error.get("requestId"))
        raw_cause = error.get("cause")
        cause = raw_cause if isinstance(raw_cause, dict) else None
    else:
        snippet = _snippet(body)
        message = f"controller returned HTTP {status}" + (f": {snippet}" if snippet else "")
    common: dict[str, Any] = {
        "status": status,
        "code": code,
        "request_id": request_id,
        "cause": cause,
        "method": method,
        "path": path,
    }

    cause_texts = [cause.get("reason"), cause.get("message")] if cause else []
    if any(_is_duplicate_text(t) for t in cause_texts) or (
        code in ("COULD_NOT_VALIDATE", "UNHANDLED") and _is_duplicate_text(message)
    ):
        return ZitiDuplicate(message, **common)
    if status in (401, 403):
        if code == "INVALID_AUTH":
            return ZitiAuthenticationFailed(message, **common)
        return ZitiUnauthorized(message, **common)
    if status == 404:
        return ZitiNotFound(message, **common)
    if status == 409:
        return ZitiConflict(message, **common)
    if status == 429:
        return ZitiRateLimited(message, retry_after=retry_after, **common)
    if status in (502, 503, 504):
        return ZitiUnavailable(message, **common)
    if 500 <= status < 600:
        return ZitiServerError(message, **common)
    if code == "COULD_NOT_VALIDATE":
        return ZitiValidationError(message, **common)
    if status >= 400:
        return ZitiBadRequest(message, **common)
    return ZitiProtocolError(f"unexpected HTTP status {status}", **common)
