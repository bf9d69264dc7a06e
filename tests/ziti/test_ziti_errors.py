"""Error envelope → typed exception mapping (controller-api.md §1 "Errors", §3.7 uniqueness)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.ziti.errors import (
    ZitiAuthenticationFailed,
    ZitiBadRequest,
    ZitiConflict,
    ZitiDuplicate,
    ZitiError,
    ZitiNotFound,
    ZitiProtocolError,
    ZitiRateLimited,
    ZitiServerError,
    ZitiUnauthorized,
    ZitiUnavailable,
    ZitiValidationError,
    error_from_response,
)

META = {"apiEnrollmentVersion": "0.0.1", "apiVersion": "0.0.1"}


def body(code: str, message: str, cause: dict[str, Any] | None = None, request_id: str = "r-1") -> bytes:
    error: dict[str, Any] = {"code": code, "message": message, "requestId": request_id}
    if cause is not None:
        error["cause"] = cause
    return json.dumps({"error": error, "meta": META}).encode()


def test_duplicate_name_on_create() -> None:
    err = error_from_response(
        400,
        body(
            "COULD_NOT_VALIDATE",
            "The supplied request contains an invalid document",
            {
                "field": "name",
                "reason": "duplicate value 'alice' in unique index on identities store",
                "value": "alice",
            },
        ),
        method="POST",
        path="/identities",
    )
    assert type(err) is ZitiDuplicate
    assert isinstance(err, ZitiValidationError) and isinstance(err, ZitiBadRequest)
    assert (err.field, err.value, err.status, err.code, err.request_id) == (
        "name",
        "alice",
        400,
        "COULD_NOT_VALIDATE",
        "r-1",
    )
    assert "unique index" in (err.reason or "")
    text = str(err)
    assert "POST /identities" in text and "field=name" in text and "requestId=r-1" in text


def test_duplicate_external_id_on_create() -> None:
    err = error_from_response(
        400,
        body(
            "COULD_NOT_VALIDATE",
            "invalid",
            {
                "field": "externalId",
                "reason": "duplicate value 'x' in unique index on identities store",
                "value": "x",
            },
        ),
    )
    assert isinstance(err, ZitiDuplicate) and err.field == "externalId"


def test_duplicate_external_id_on_update_is_a_500_unhandled() -> None:
    err = error_from_response(
        500,
        body(
            "UNHANDLED",
            "could not update",
            {"code": "UNHANDLED", "message": "duplicate value 'x' in unique index on identities store"},
        ),
    )
    assert isinstance(err, ZitiDuplicate)
    assert err.field is None and err.status == 500
    assert err.reason == "duplicate value 'x' in unique index on identities store"


def test_plain_validation_error_keeps_field() -> None:
    err = error_from_response(
        400,
        body(
            "COULD_NOT_VALIDATE",
            "invalid",
            {"field": "roleAttributes", "reason": "role attributes may not start with # or @", "value": "#x"},
        ),
    )
    assert type(err) is ZitiValidationError
    assert err.field == "roleAttributes" and err.value == "#x"


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "INVALID_FILTER", ZitiBadRequest),
        (400, "COULD_NOT_PARSE_BODY", ZitiBadRequest),
        (413, "REQUEST_ENTITY_TOO_LARGE", ZitiBadRequest),
        (401, "UNAUTHORIZED", ZitiUnauthorized),
        (403, "UNAUTHORIZED", ZitiUnauthorized),
        (401, "INVALID_AUTH", ZitiAuthenticationFailed),
        (404, "NOT_FOUND", ZitiNotFound),
        (409, "CAN_NOT_DELETE_REFERENCED_ENTITY", ZitiConflict),
        (429, "SERVER_TOO_MANY_REQUESTS", ZitiRateLimited),
        (503, "CLUSTER_NO_LEADER", ZitiUnavailable),
        (502, "BAD_GATEWAY", ZitiUnavailable),
        (500, "UNHANDLED", ZitiServerError),
        (501, "NOT_IMPLEMENTED", ZitiServerError),
    ],
)
def test_status_mapping(status: int, code: str, cls: type[ZitiError]) -> None:
    err = error_from_response(status, body(code, "msg"))
    assert type(err) is cls
    assert err.status == status and err.code == code and err.message == "msg"


def test_server_errors_count_as_unavailable() -> None:
    assert isinstance(error_from_response(500, body("UNHANDLED", "x")), ZitiUnavailable)


@pytest.mark.parametrize("status", [602, 606])
def test_six_hundred_statuses_are_validation_errors(status: int) -> None:
    err = error_from_response(status, body("COULD_NOT_VALIDATE", "method in query should be one of ..."))
    assert type(err) is ZitiValidationError and err.status == status and err.field is None


def test_rate_limited_carries_retry_after() -> None:
    err = error_from_response(429, body("SERVER_TOO_MANY_REQUESTS", "slow down"), retry_after=3.0)
    assert isinstance(err, ZitiRateLimited) and err.retry_after == 3.0


def test_non_json_error_body_still_maps_by_status() -> None:
    err = error_from_response(502, b"<html><body>Bad Gateway\x00</body></html>")
    assert type(err) is ZitiUnavailable
    assert err.code is None and "Bad Gateway" in err.message and "\x00" not in err.message


def test_empty_error_body() -> None:
    err = error_from_response(404, b"")
    assert type(err) is ZitiNotFound and err.message == "controller returned HTTP 404"


@pytest.mark.parametrize("raw", [b"[1,2]", b'{"error": "text"}', b'"str"', b"{"])
def test_odd_bodies_do_not_crash(raw: bytes) -> None:
    err = error_from_response(400, raw)
    assert type(err) is ZitiBadRequest and err.cause is None


def test_non_error_status_is_protocol_error() -> None:
    assert isinstance(error_from_response(302, b""), ZitiProtocolError)
