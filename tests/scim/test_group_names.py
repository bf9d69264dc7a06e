"""Issue 9 item 5: group names are unique per source, case-insensitively, in every source kind.

Role attributes derive from group names, so two groups of one name in a source are ambiguous: a second
POST, a PUT or a PATCH that renames a group onto a taken name is 409 ``uniqueness`` and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from app.config import Config, SourceConfig, hash_token
from app.config_schema import SOURCE_KINDS
from app.server import create_app
from tests.support.live import live_server

GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def token(kind: str) -> str:
    return f"token-of-the-{kind}-source-0123456789"


@pytest.fixture
def scim(shared_database_url: str, source_name: str) -> Iterator[str]:
    sources = {
        f"{source_name}-{kind}": SourceConfig(name=f"{source_name}-{kind}", kind=kind, token_hashes=(hash_token(token(kind)),))
        for kind in SOURCE_KINDS
    }
    with live_server(create_app(Config(database_url=shared_database_url, sources=sources))) as url:
        yield f"{url}/scim/v2"


def client(scim: str, kind: str) -> httpx.Client:
    return httpx.Client(
        base_url=scim,
        headers={"Authorization": f"Bearer {token(kind)}", "Content-Type": "application/scim+json"},
        timeout=30,
    )


def names(http: httpx.Client) -> list[str]:
    listed = http.get("/Groups", params={"count": 100})
    assert listed.status_code == 200
    return sorted(group["displayName"] for group in listed.json()["Resources"])


def assert_uniqueness(answer: httpx.Response) -> None:
    assert answer.status_code == 409, answer.text
    assert answer.json()["scimType"] == "uniqueness"


@pytest.mark.parametrize("kind", SOURCE_KINDS)
def test_a_second_group_of_the_same_name_is_refused(scim: str, kind: str) -> None:
    with client(scim, kind) as http:
        assert http.post("/Groups", json={"schemas": [GROUP], "displayName": "Engineers"}).status_code == 201
        assert_uniqueness(http.post("/Groups", json={"schemas": [GROUP], "displayName": "engineers"}))
        assert names(http) == ["Engineers"]
    other = "generic" if kind != "generic" else "okta"
    with client(scim, other) as http:  # another source may use the name
        assert http.post("/Groups", json={"schemas": [GROUP], "displayName": "Engineers"}).status_code == 201


@pytest.mark.parametrize("kind", SOURCE_KINDS)
def test_renaming_onto_a_taken_name_is_refused_and_changes_nothing(scim: str, kind: str) -> None:
    with client(scim, kind) as http:
        assert http.post("/Groups", json={"schemas": [GROUP], "displayName": "Engineers"}).status_code == 201
        ops = http.post("/Groups", json={"schemas": [GROUP], "displayName": "Ops"})
        assert ops.status_code == 201
        location = f"/Groups/{ops.json()['id']}"
        assert_uniqueness(http.put(location, json={"schemas": [GROUP], "displayName": "ENGINEERS"}))
        by_path = {"op": "replace", "path": "displayName", "value": "Engineers"}
        assert_uniqueness(http.patch(location, json={"schemas": [PATCH], "Operations": [by_path]}))
        pathless = {"op": "replace", "value": {"displayName": "engineers"}}
        assert_uniqueness(http.patch(location, json={"schemas": [PATCH], "Operations": [pathless]}))
        assert names(http) == ["Engineers", "Ops"]
        # A rename onto a free name, and a change of case of its own name, are fine.
        rename = {"op": "replace", "path": "displayName", "value": "Operations"}
        assert http.patch(location, json={"schemas": [PATCH], "Operations": [rename]}).status_code in (200, 204)
        assert http.put(location, json={"schemas": [GROUP], "displayName": "OPERATIONS"}).status_code == 200
        assert names(http) == ["Engineers", "OPERATIONS"]


def test_legacy_duplicates_keep_their_name_when_the_idp_resends_it(sqlite_url: str, source_name: str) -> None:
    """Two groups that share a name from before the rule (or with it switched off) are not refused when the
    IdP re-sends the unchanged name, as Entra and Okta do in every group PATCH; a real rename still is."""

    def app(unique: bool) -> Config:
        options = {"unique_group_names": unique}
        source = SourceConfig(
            name=source_name, kind="generic", token_hashes=(hash_token(token("generic")),), options=options
        )
        return Config(database_url=sqlite_url, sources={source_name: source})

    with live_server(create_app(app(unique=False))) as url, client(f"{url}/scim/v2", "generic") as http:
        ids = [http.post("/Groups", json={"schemas": [GROUP], "displayName": "Eng"}).json()["id"] for _ in (1, 2)]
        assert http.post("/Groups", json={"schemas": [GROUP], "displayName": "Ops"}).status_code == 201
    with live_server(create_app(app(unique=True))) as url, client(f"{url}/scim/v2", "generic") as http:
        location = f"/Groups/{ids[0]}"
        same = {"op": "replace", "path": "displayName", "value": "Eng"}
        assert http.patch(location, json={"schemas": [PATCH], "Operations": [same]}).status_code in (200, 204)
        assert http.put(location, json={"schemas": [GROUP], "displayName": "Eng"}).status_code == 200
        onto = {"op": "replace", "path": "displayName", "value": "ops"}
        assert_uniqueness(http.patch(location, json={"schemas": [PATCH], "Operations": [onto]}))
        assert names(http) == ["Eng", "Eng", "Ops"]
