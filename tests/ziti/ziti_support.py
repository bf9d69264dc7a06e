"""Helpers for the Ziti client tests: a scriptable fake controller for httpx.MockTransport and
request-body validation against the real edge-api ``management.yml``."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import jsonschema
import yaml
from referencing import Registry
from referencing.jsonschema import DRAFT4

from tests.paths import SPEC

USERNAME = "scim-admin"
PASSWORD = "pw-Very-Secret-42"  # noqa: S105 - test value, asserted never to be logged
BASE = "https://ctrl.test:1280/edge/management/v1"

Handler = Callable[[httpx.Request], Awaitable[httpx.Response] | httpx.Response]


def envelope_error(
    status: int, code: str, message: str, cause: dict[str, Any] | None = None
) -> httpx.Response:
    error: dict[str, Any] = {"code": code, "message": message, "requestId": "req-" + uuid.uuid4().hex[:8]}
    if cause is not None:
        error["cause"] = cause
    return httpx.Response(
        status, json={"error": error, "meta": {"apiEnrollmentVersion": "0.0.1", "apiVersion": "0.0.1"}}
    )


def unauthorized() -> httpx.Response:
    return envelope_error(
        401,
        "UNAUTHORIZED",
        "The request could not be completed. The session is not authorized or the credentials are invalid",
    )


@dataclass
class Recorded:
    method: str
    path: str
    params: dict[str, str]
    headers: httpx.Headers
    body: bytes
    raw_path: str = ""

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeController:
    """An in-memory stand-in for the controller behind ``httpx.MockTransport``.

    ``/authenticate`` issues UUID tokens; other routes demand a valid ``zt-session`` and then answer from
    ``routes[(METHOD, path)]``: a list of responses/exceptions consumed in order (the last one repeats)
    or a callable. ``delay`` makes every route handler sleep (to build concurrency).
    """

    password: str = PASSWORD
    routes: dict[tuple[str, str], Any] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    requests: list[Recorded] = field(default_factory=list)
    auth_calls: int = 0
    auth_response: Callable[[str], httpx.Response] | None = None
    delay: float = 0.0
    in_flight: int = 0
    peak_in_flight: int = 0
    issued: list[str] = field(default_factory=list)

    def route(self, method: str, path: str, *responses: Any) -> None:
        self.routes[(method, path)] = list(responses)

    def expire_sessions(self) -> None:
        self.tokens.clear()

    def calls(self, method: str | None = None, path: str | None = None) -> list[Recorded]:
        return [
            r
            for r in self.requests
            if (method is None or r.method == method) and (path is None or r.path == path)
        ]

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        prefix = "/edge/management/v1"
        path = request.url.path
        assert path.startswith(prefix), path
        path = path[len(prefix) :]
        rec = Recorded(
            request.method,
            path,
            dict(request.url.params),
            request.headers,
            request.content,
            request.url.raw_path.decode().split("?")[0],
        )
        self.requests.append(rec)
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if path == "/authenticate" and request.method == "POST":
                return self._authenticate(request)
            if request.headers.get("zt-session") not in self.tokens:
                return unauthorized()
            return await self._dispatch(request, rec)
        finally:
            self.in_flight -= 1

    def _authenticate(self, request: httpx.Request) -> httpx.Response:
        self.auth_calls += 1
        token = str(uuid.uuid4())
        if self.auth_response is not None:
            response = self.auth_response(token)
            if response.status_code == 200:
                self.tokens.add(token)
                self.issued.append(token)
            return response
        body = json.loads(request.content)
        if body != {"username": USERNAME, "password": self.password}:
            return envelope_error(401, "INVALID_AUTH", "The authentication request failed")
        self.tokens.add(token)
        self.issued.append(token)
        return httpx.Response(
            200,
            headers={"zt-session": token},
            json={
                "data": {
                    "id": "sess1",
                    "token": token,
                    "expirationSeconds": 1800,
                    "identity": {"id": "adm1", "name": "Default Admin"},
                },
                "meta": {},
            },
        )

    async def _dispatch(self, request: httpx.Request, rec: Recorded) -> httpx.Response:
        key = (request.method, rec.path)
        if key not in self.routes:
            return envelope_error(
                404,
                "NOT_FOUND",
                "The resource requested was not found or is no longer available",
                {"code": "NOT_FOUND", "message": "not found"},
            )
        entry = self.routes[key]
        if callable(entry):
            result = entry(request)
            if asyncio.iscoroutine(result):
                result = await result
        else:
            result = entry.pop(0) if len(entry) > 1 else entry[0]
        if isinstance(result, BaseException):
            raise result
        assert isinstance(result, httpx.Response)
        return result


def list_envelope(
    items: list[dict[str, Any]], *, limit: int = 500, offset: int = 0, total: int | None = None
) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "data": items,
            "meta": {
                "pagination": {
                    "limit": limit,
                    "offset": offset,
                    "totalCount": len(items) if total is None else total,
                },
                "filterableFields": ["id", "name", "externalId"],
            },
        },
    )


@dataclass
class SleepRecorder:
    """Injectable sleep: records requested delays, advances the fake clock, yields to the loop."""

    clock: FakeClock
    delays: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.clock.now += seconds
        await asyncio.sleep(0)


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------------------------------- spec schemas


def _spec_fix(node: Any) -> Any:
    """Make the go-swagger bundle usable with jsonschema (see SOURCE.txt 'Loading caveats')."""
    if isinstance(node, list):
        return [_spec_fix(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _spec_fix(v) for k, v in node.items()}
    for key in ("minLength", "maxLength", "minItems", "maxItems"):
        if isinstance(out.get(key), float):
            out[key] = int(out[key])
    if out.get("x-nullable") is True:
        if "type" in out and isinstance(out["type"], str):
            out["type"] = [out["type"], "null"]
        elif "$ref" in out or "allOf" in out:
            out = {"anyOf": [{k: v for k, v in out.items() if k != "x-nullable"}, {"type": "null"}]}
    return out


def make_spec_validator() -> Callable[[str, Any], None]:
    """``validate(definition_name, instance)`` against management.yml ``#/definitions/<name>``."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader is ~10x faster on 27k lines
    raw = yaml.load(SPEC.read_text(), Loader=loader)  # noqa: S506 - safe loader
    raw["definitions"]["controllerSettingsList"]["items"] = {}
    raw["definitions"]["subTags"] = {"type": "object"}  # real tag values are scalars
    document = _spec_fix(copy.deepcopy(raw))
    registry: Registry[Any] = Registry().with_resource("urn:mgmt", DRAFT4.create_resource(document))

    def validate(name: str, instance: Any) -> None:
        schema = {"$ref": f"urn:mgmt#/definitions/{name}"}
        jsonschema.Draft4Validator(schema, registry=registry).validate(instance)

    return validate
