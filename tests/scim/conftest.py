"""A live ziti-scim server with two sources, on each database."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from app.config import Config, PolicyConfig, SourceConfig, hash_token
from app.server import create_app
from tests.support.live import live_server

TOKEN_A = "token-of-source-a-0123456789"
TOKEN_A2 = "second-token-of-source-a-0123"
TOKEN_B = "token-of-source-b-0123456789"


@dataclass
class Live:
    url: str
    scim: str
    app: object

    def client(self, token: str = TOKEN_A) -> httpx.Client:
        return httpx.Client(
            base_url=self.scim,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"},
            timeout=30,
        )


def make_config(database_url: str, prefix: str) -> Config:
    return Config(
        database_url=database_url,
        sources={
            f"{prefix}a": SourceConfig(
                name=f"{prefix}a",
                token_hashes=(hash_token(TOKEN_A), hash_token(TOKEN_A2)),
                policy=PolicyConfig(),
            ),
            # Source b reads payloads strictly (RFC 7644 to the letter), as an operator may choose.
            f"{prefix}b": SourceConfig(
                name=f"{prefix}b",
                token_hashes=(hash_token(TOKEN_B),),
                policy=PolicyConfig(
                    unknown="forbid", remove_value_as_filter="forbid", unmatched_path_filter="forbid"
                ),
            ),
        },
    )


@pytest.fixture
def live(shared_database_url: str, source_name: str) -> Iterator[Live]:
    app = create_app(make_config(shared_database_url, source_name))
    with live_server(app) as url:
        yield Live(url=url, scim=f"{url}/scim/v2", app=app)
