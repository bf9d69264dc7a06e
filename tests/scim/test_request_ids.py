"""Issue 12: a client's ``X-Request-Id`` is bounded and sanitised before it reaches a log line or a row,
and a value the database cannot hold is the client's error (400), never a retryable 503."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select, text

from app.observability import audit
from app.server import create_app
from app.store.db import Database
from app.store.errors import is_data_error
from app.store.tables import dirty
from tests.scim.test_limits import USER_SCHEMA, _client
from tests.support.live import live_server
from tests.support.stack import make_stack_config
from ziti_emulator import EmulatorThread


@pytest.fixture
def served(emulator: EmulatorThread, database_url: str, source_name: str) -> Iterator[tuple[str, str]]:
    config = make_stack_config(database_url, source_name, emulator.url)
    with live_server(create_app(config)) as url:
        yield url, database_url


async def _stored_ids(database_url: str) -> tuple[list[Any], list[Any]]:
    db = Database(database_url)
    try:
        async with db.transaction() as conn:
            marked = (await conn.execute(select(dirty.c.request_id))).scalars().all()
        entries = await audit.read(db, since=None, user=None, limit=100)
        return list(marked), [entry["request_id"] for entry in entries]
    finally:
        await db.dispose()


def test_a_200_character_request_id_is_bounded_and_the_write_succeeds(
    served: tuple[str, str], emulator: EmulatorThread, caplog: pytest.LogCaptureFixture
) -> None:
    url, database_url = served
    long_id = "r" * 200
    body = {"schemas": [USER_SCHEMA], "userName": "long-id", "emails": [{"value": "long-id@example.com"}]}
    with caplog.at_level(logging.INFO), _client(url) as client:
        response = client.post("/Users", json=body, headers={"X-Request-Id": long_id})
    assert response.status_code == 201, response.text
    assert response.headers["X-Request-Id"] == "r" * 64
    deadline = time.monotonic() + 20  # converged after the answer: wait for its audit row
    while not asyncio.run(_stored_ids(database_url))[1]:
        assert time.monotonic() < deadline, "the create was never converged"
        time.sleep(0.05)
    assert emulator.state.identity_by_external_id("long-id@example.com") is not None
    marked, audited = asyncio.run(_stored_ids(database_url))
    assert audited and set(audited) == {"r" * 64}
    assert all(value is None or len(value) <= 64 for value in marked)
    assert long_id not in caplog.text


def test_a_request_id_with_control_characters_is_cleaned(served: tuple[str, str]) -> None:
    url, _ = served
    with _client(url) as client:
        response = client.get("/Users", headers={"X-Request-Id": "abc\tdef\x7f{}<script>"})
        assert response.status_code == 200
        assert response.headers["X-Request-Id"] == "abcdefscript"
        generated = client.get("/Users", headers={"X-Request-Id": "{}<>"}).headers["X-Request-Id"]
        assert len(generated) == 32 and generated.isalnum()


async def _refusal(database_url: str, statement: str) -> BaseException:
    db = Database(database_url)
    try:
        async with db.transaction() as conn:
            await conn.execute(text(statement))
    except Exception as error:  # noqa: BLE001 - the refusal is what the test inspects
        return error
    finally:
        await db.dispose()
    raise AssertionError(f"{statement} was accepted")


@pytest.mark.postgres
def test_data_errors_are_the_clients_and_outages_are_transient(postgres_url: str) -> None:
    too_long = "INSERT INTO dirty (source, user_id, due_at, request_id) VALUES ('s', 'u', 0, '" + "x" * 65 + "')"
    assert is_data_error(asyncio.run(_refusal(postgres_url, too_long)))
    assert is_data_error(asyncio.run(_refusal(postgres_url, "SELECT CAST('abc' AS integer)")))
    assert not is_data_error(asyncio.run(_refusal(postgres_url, "SELECT * FROM no_such_table")))
    unreachable = postgres_url.replace(":5432/", ":9/")
    assert not is_data_error(asyncio.run(_refusal(unreachable, "SELECT 1")))
