"""Replaying a recorded IdP request against the live server, and comparing the answer with the trace's."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.idp.conftest import Stack
from tests.paths import TRACES, need

DROPPED_HEADERS = {"host", "content-length", "connection", "accept-encoding"}


def load(folder: str, prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every trace of ``folder`` whose file name starts with ``prefix``, in file order."""
    files = sorted(p for p in need(TRACES / folder).glob(f"{prefix}*.json"))
    assert files, f"no traces in {TRACES / folder}"
    return [(p.name, json.loads(p.read_text())) for p in files]


def trace_time(trace: dict[str, Any]) -> float | None:
    """The moment the IdP sent a signed delivery (so the verifier's clock can be pinned to it)."""
    signing = trace.get("signing") or {}
    if "t" in signing:
        return float(signing["t"]) + 1
    body = trace.get("body") or {}
    if isinstance(body, dict) and isinstance(body.get("iat"), int):
        return body["iat"] / 1000 + 1
    if isinstance(body, dict) and isinstance(body.get("created"), str):
        return dt.datetime.fromisoformat(body["created"].replace("Z", "+00:00")).timestamp() + 1
    return None


@dataclass
class Replayer:
    """Sends traces in order, mapping the ids the IdP learnt from its receiver to the ids this server made."""

    stack: Stack
    source: str
    ids: dict[str, str] = field(default_factory=dict)

    def substitute(self, text: str) -> str:
        for recorded, ours in self.ids.items():
            text = text.replace(recorded, ours)
        return text

    def send(self, trace: dict[str, Any], *, path: str | None = None) -> httpx.Response:
        target = path or trace["path"]
        if target.startswith(("/webhooks/", "/authentik/")):
            target = f"/webhooks/{self.source}" + (target[target.index("?") :] if "?" in target else "")
            if (moment := trace_time(trace)) is not None:
                self.stack.pin_clock(moment)
        headers = {k: v for k, v in trace["headers"].items() if k.lower() not in DROPPED_HEADERS}
        if trace.get("raw_body") is not None:
            content: bytes | None = trace["raw_body"].encode()
        elif trace.get("body") is not None:
            content = json.dumps(trace["body"]).encode()
        else:
            content = None
        if content is not None and "signing" not in trace:
            content = self.substitute(content.decode()).encode()
        return httpx.request(
            trace["method"],
            self.stack.url + self.substitute(target),
            content=content,
            headers=headers,
            timeout=30,
        )

    def replay(self, name: str, trace: dict[str, Any], *, created_as: str | None = None) -> httpx.Response:
        """Send one trace, check the answer against ``expected_response``, and learn the id it created."""
        response = self.send(trace)
        expected = trace.get("expected_response") or {}
        if "status" in expected:
            assert response.status_code == expected["status"], (
                f"{name}: {response.status_code} {response.text}"
            )
        body = expected.get("body")
        if isinstance(body, dict) and response.status_code < 300:
            actual = response.json()
            recorded_id = body.get("id")
            if isinstance(recorded_id, str) and isinstance(actual.get("id"), str):
                self.ids.setdefault(recorded_id, actual["id"])
            assert_matches(body, actual, self, name)
        elif isinstance(body, str):
            assert response.text == body, name
        for header, value in (expected.get("headers") or {}).items():
            assert response.headers.get(header, "").startswith(value), f"{name}: header {header}"
        if created_as is not None:
            assert response.status_code == 201, f"{name}: {response.status_code} {response.text}"
            self.ids[created_as] = response.json()["id"]
        return response


def assert_matches(expected: Any, actual: Any, replayer: Replayer, where: str) -> None:
    """``actual`` has every field ``expected`` lists, with the same value (ids mapped, extra fields allowed).

    ``meta`` is compared on ``resourceType`` only (timestamps and locations are the server's own);
    ``schemas`` must contain the expected URNs; an expected ``[]`` also matches an absent attribute. A
    User's ``groups`` is not compared: it is readOnly and derived from memberships (RFC 7643 §4.1.2), and
    okta-08 expects ``[]`` right after okta-07 made the user a member (the recorded mock did not model it).
    """
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected an object, got {actual!r}"
        for key, value in expected.items():
            here = f"{where}.{key}"
            if key == "meta":
                assert actual.get("meta", {}).get("resourceType") == value.get("resourceType"), here
            elif key == "groups" and expected.get("meta", {}).get("resourceType") == "User":
                continue
            elif key == "schemas":
                assert set(value) <= set(actual.get("schemas", [])), f"{here}: {actual.get('schemas')}"
            elif key in ("id", "value") and isinstance(value, str):
                assert actual.get(key) == replayer.ids.get(value, value), f"{here}: {actual.get(key)!r}"
            elif value == [] and key not in actual:
                continue
            else:
                assert key in actual, f"{here} missing in {actual!r}"
                assert_matches(value, actual[key], replayer, here)
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{where}: {actual!r}"
        for index, (item, got) in enumerate(zip(expected, actual, strict=True)):
            assert_matches(item, got, replayer, f"{where}[{index}]")
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def trace_path(folder: str, name: str) -> Path:
    return TRACES / folder / name
