"""Issue 12: webhook input errors are 4xx over real HTTP, never a 503 the IdP would retry; the WebSub
challenge echo cannot be sniffed as HTML."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from app.config import Config, SourceConfig
from app.idp.authentik.webhook import parse_authentik
from app.server import create_app
from app.webhooks import FetchUser, WebhookInvalid
from tests.support.live import live_server

AUTHENTIK_SECRET = "authentik-webhook-secret-0123456789"
ASGARDEO_SECRET = "asgardeo-webhook-secret-0123456789"


@pytest.fixture
def served(sqlite_url: str) -> Iterator[str]:
    sources = {
        "ak": SourceConfig(
            name="ak",
            kind="authentik",
            mapping={"preset": "authentik"},
            # The API is unreachable: a pk that reached the fetcher would be a transient 503.
            options={
                "webhook_secret": AUTHENTIK_SECRET,
                "authentik_url": "http://127.0.0.1:9",
                "authentik_token": "authentik-api-token-0123456789",
            },
        ),
        "as": SourceConfig(
            name="as", kind="asgardeo", mapping={"preset": "asgardeo"}, options={"webhook_secret": ASGARDEO_SECRET}
        ),
    }
    with live_server(create_app(Config(database_url=sqlite_url, sources=sources))) as url:
        yield url


def _authentik(pk: object) -> bytes:
    model = {"app": "authentik_core", "model_name": "user", "pk": pk}
    return json.dumps({"action": "model_updated", "model": model, "user": None, "event_uuid": f"e-{pk}"}).encode()


@pytest.mark.parametrize("pk", ["abc", "7; DROP", "../7", "1" * 21, -3])
def test_a_non_numeric_authentik_pk_is_a_400(served: str, pk: object) -> None:
    response = httpx.post(
        f"{served}/webhooks/ak",
        content=_authentik(pk),
        headers={"Authorization": f"Bearer {AUTHENTIK_SECRET}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert "pk" in response.json()["error"]
    with pytest.raises(WebhookInvalid, match="pk"):
        parse_authentik(_authentik(pk))


def test_a_numeric_authentik_pk_still_names_the_user() -> None:
    assert parse_authentik(_authentik(7)).events == (FetchUser("7"),)
    assert parse_authentik(_authentik("42")).events == (FetchUser("42"),)


def test_the_websub_challenge_is_plain_text_not_sniffed(served: str) -> None:
    challenge = "<script>alert(1)</script>"
    params = {"hub.mode": "subscribe", "hub.topic": "org/USERS", "hub.challenge": challenge}
    response = httpx.get(f"{served}/webhooks/as", params=params)
    assert response.status_code == 200
    assert response.text == challenge
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["x-content-type-options"] == "nosniff"
