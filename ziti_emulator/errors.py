"""Error envelope and error codes of the emulated controller.

Follows ``controller/response/responder.go toRestModel`` and ``controller/apierror/messages.go``
(``docs/controller-api.md`` §1 "Errors" and "Codes"):

* body ``{"error": {"code", "message", "requestId", "cause"?}, "meta": {"apiEnrollmentVersion",
  "apiVersion"}}``;
* ``cause`` is either a field error ``{"field", "reason", "value"}`` (``value`` rendered like Go's ``%v``,
  so always a string) or a nested error ``{"code", "message"}``;
* ``INVALID_FIELD`` with a field cause is rewritten to ``COULD_NOT_VALIDATE`` by the controller, so this
  module never emits ``INVALID_FIELD``.
"""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]

ERROR_META: JSON = {"apiEnrollmentVersion": "0.0.1", "apiVersion": "0.0.1"}

COULD_NOT_VALIDATE_MESSAGE = (
    "The supplied request contains an invalid document or no valid accept content were available, see cause"
)
UNAUTHORIZED_MESSAGE = (
    "The request could not be completed. The session is not authorized or the credentials are invalid"
)


class ApiError(Exception):
    """An error answered with the controller's error envelope."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        cause: JSON | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.cause = cause
        self.headers = headers or {}

    def body(self, request_id: str) -> JSON:
        """The JSON envelope for this error (causeMessage/args are never set by the controller)."""
        error: JSON = {"code": self.code, "message": self.message, "requestId": request_id}
        if self.cause is not None:
            error["cause"] = self.cause
        return {"error": error, "meta": dict(ERROR_META)}


def go_value(value: Any) -> str:
    """Render ``value`` the way Go's ``fmt.Sprintf("%v", v)`` would for the JSON types involved."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list | tuple):
        return "[" + " ".join(go_value(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = " ".join(f"{k}:{go_value(v)}" for k, v in sorted(value.items()))
        return f"map[{inner}]"
    return str(value)


def field_cause(field: str, reason: str, value: Any) -> JSON:
    return {"field": field, "reason": reason, "value": go_value(value)}


def nested_cause(message: str, code: str = "UNHANDLED") -> JSON:
    return {"code": code, "message": message}


def field_error(field: str, reason: str, value: Any) -> ApiError:
    """A field error (INVALID_FIELD on the controller, rewritten to COULD_NOT_VALIDATE on the wire)."""
    return ApiError(400, "COULD_NOT_VALIDATE", COULD_NOT_VALIDATE_MESSAGE, field_cause(field, reason, value))


def duplicate_error(store: str, field: str, value: Any) -> ApiError:
    """controller-api.md §3.7: unique index violation on create."""
    reason = f"duplicate value '{go_value(value)}' in unique index on {store} store"
    return field_error(field, reason, value)


def could_not_parse_body(message: str) -> ApiError:
    return ApiError(
        400, "COULD_NOT_PARSE_BODY", "The body of the request could not be parsed", nested_cause(message)
    )


def not_found(cause: JSON | None = None) -> ApiError:
    return ApiError(404, "NOT_FOUND", "The resource requested was not found or is no longer available", cause)


def method_not_allowed() -> ApiError:
    return ApiError(405, "METHOD_NOT_ALLOWED", "The resource requested does not support this HTTP verb")


def unauthorized(cause: JSON | None = None, headers: dict[str, str] | None = None) -> ApiError:
    return ApiError(401, "UNAUTHORIZED", UNAUTHORIZED_MESSAGE, cause, headers)


def invalid_auth() -> ApiError:
    return ApiError(401, "INVALID_AUTH", "The authentication request failed")


def invalid_filter(message: str) -> ApiError:
    return ApiError(400, "INVALID_FILTER", "The filter query supplied is invalid", nested_cause(message))


def invalid_pagination(message: str) -> ApiError:
    return ApiError(
        400, "INVALID_PAGINATION", "The pagination properties provided are invalid", nested_cause(message)
    )


def invalid_sort(message: str) -> ApiError:
    return ApiError(
        400, "INVALID_SORT_IDENTIFIER", "The sort order supplied is invalid", nested_cause(message)
    )


def entity_can_not_be_deleted(message: str) -> ApiError:
    return ApiError(
        400,
        "ENTITY_CAN_NOT_BE_DELETED",
        "The entity requested for delete can not be deleted",
        nested_cause(message),
    )


def can_not_delete_referenced(
    local_type: str, remote_type: str, remote_ids: list[str], field: str
) -> ApiError:
    reason = f"entity type {local_type} referenced by {remote_type}: {go_value(remote_ids)}"
    return ApiError(
        409,
        "CAN_NOT_DELETE_REFERENCED_ENTITY",
        "the entity cannot be deleted because it is referenced by another entity, see cause",
        field_cause(field, reason, remote_ids),
    )


def referenced_entity_not_found(field: str, value: Any, reason: str) -> ApiError:
    """controller-api.md §4: the misleading code used when a signer has neither jwksEndpoint nor certPem."""
    message = f"the value '{go_value(value)}' for '{field}' is invalid: {reason}"
    return ApiError(400, "REFERENCED_ENTITY_NOT_FOUND", "REFERENCED_ENTITY_NOT_FOUND", nested_cause(message))


def invalid_cert_pem() -> ApiError:
    return ApiError(
        400,
        "INVALID_CERT_PEM",
        "the supplied certificate PEM is either invalid or contains the incorrect number of certificates",
    )


def unhandled(message: str) -> ApiError:
    return ApiError(500, "UNHANDLED", "An unhandled error occurred", nested_cause(message))


def request_entity_too_large() -> ApiError:
    return ApiError(413, "REQUEST_ENTITY_TOO_LARGE", "The request body is too large")


def too_many_requests() -> ApiError:
    return ApiError(
        429,
        "SERVER_TOO_MANY_REQUESTS",
        "Too many requests to alter state have been issued. "
        "Please slow your request rate or try again later.",
    )


def cluster_no_leader() -> ApiError:
    return ApiError(503, "CLUSTER_NO_LEADER", "Cluster has no leader")
