"""SCIM behaviour over real HTTP: uniqueness under concurrency, isolation, membership PATCH, ETags."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.scim.conftest import TOKEN_A, TOKEN_B, Live

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH], "Operations": list(operations)}


def test_concurrent_creates_with_the_same_user_name_differing_in_case(live: Live) -> None:
    """Acceptance 3: exactly one 201 and one 409 uniqueness, many times over."""

    async def race(round_: int) -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {TOKEN_A}", "Content-Type": "application/scim+json"}
        async with httpx.AsyncClient(base_url=live.scim, headers=headers, timeout=30) as client:
            names = [f"Racer{round_}", f"rACER{round_}"]
            return list(
                await asyncio.gather(
                    *(client.post("/Users", json={"schemas": [USER], "userName": n}) for n in names)
                )
            )

    async def all_rounds() -> list[list[httpx.Response]]:
        return [await race(round_) for round_ in range(10)]

    for responses in asyncio.run(all_rounds()):
        assert sorted(r.status_code for r in responses) == [201, 409]
        conflict = next(r for r in responses if r.status_code == 409).json()
        assert conflict["scimType"] == "uniqueness"
    with live.client() as client:
        assert client.get("/Users", params={"filter": 'userName sw "racer"'}).json()["totalResults"] == 10


def test_sources_are_isolated(live: Live) -> None:
    """Acceptance 4: a token of source A can neither read nor change a resource of source B."""
    with live.client(TOKEN_A) as a, live.client(TOKEN_B) as b:
        user = a.post("/Users", json={"schemas": [USER], "userName": "isolated"}).json()
        group = a.post("/Groups", json={"schemas": [GROUP], "displayName": "a-group"}).json()
        assert b.get("/Users").json()["totalResults"] == 0
        assert b.get("/Users", params={"filter": 'userName eq "isolated"'}).json()["totalResults"] == 0
        assert (
            b.post(
                "/.search", json={"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"]}
            ).json()["totalResults"]
            == 0
        )
        for method, path, body in [
            ("GET", f"/Users/{user['id']}", None),
            ("PUT", f"/Users/{user['id']}", {"schemas": [USER], "userName": "stolen"}),
            ("PATCH", f"/Users/{user['id']}", patch({"op": "replace", "path": "active", "value": False})),
            ("DELETE", f"/Users/{user['id']}", None),
            (
                "PATCH",
                f"/Groups/{group['id']}",
                patch({"op": "add", "path": "members", "value": [{"value": "x"}]}),
            ),
            ("DELETE", f"/Groups/{group['id']}", None),
        ]:
            assert b.request(method, path, json=body).status_code == 404, (method, path)
        # Source B cannot use A's users as members of its own groups either.
        refused = b.post(
            "/Groups", json={"schemas": [GROUP], "displayName": "b", "members": [{"value": user["id"]}]}
        )
        assert refused.status_code == 400
        # Same userName in another source is another user.
        assert b.post("/Users", json={"schemas": [USER], "userName": "isolated"}).status_code == 201
        assert a.get(f"/Users/{user['id']}").json()["userName"] == "isolated"
        assert a.get(f"/Users/{user['id']}").json().get("active") is None


def _members(client: httpx.Client, group_id: str) -> set[str]:
    return {m["value"] for m in client.get(f"/Groups/{group_id}").json().get("members", [])}


def test_membership_patch_forms(live: Live) -> None:
    with live.client() as client:
        ids = [
            client.post("/Users", json={"schemas": [USER], "userName": f"m{i}"}).json()["id"]
            for i in range(4)
        ]
        group = client.post("/Groups", json={"schemas": [GROUP], "displayName": "team", "members": []}).json()
        gid = group["id"]
        added = client.patch(
            f"/Groups/{gid}",
            json=patch({"op": "Add", "path": "members", "value": [{"value": ids[0]}, {"value": ids[1]}]}),
        )
        assert added.status_code == 200
        assert {m["value"] for m in added.json()["members"]} == {ids[0], ids[1]}
        assert added.headers["ETag"] == added.json()["meta"]["version"] != group["meta"]["version"]
        # Adding an existing member again changes nothing (IdP retries).
        again = client.patch(
            f"/Groups/{gid}", json=patch({"op": "add", "path": "members", "value": [{"value": ids[0]}]})
        )
        assert again.json()["meta"]["version"] == added.json()["meta"]["version"]
        # Remove by value filter (RFC form, Authentik), and remove with a value list (Entra form).
        client.patch(f"/Groups/{gid}", json=patch({"op": "remove", "path": f'members[value eq "{ids[0]}"]'}))
        assert _members(client, gid) == {ids[1]}
        client.patch(
            f"/Groups/{gid}",
            json=patch(
                {"op": "add", "path": "members", "value": [{"value": ids[2]}]},
                {"op": "Remove", "path": "members", "value": [{"value": ids[1]}]},
            ),
        )
        assert _members(client, gid) == {ids[2]}
        # Operations apply in order (RFC 7644 §3.5.2): added then removed in one request is not a member,
        # removed then added is; in both member forms (plain value list, and remove by value filter).
        for remove in (
            {"op": "remove", "path": "members", "value": [{"value": ids[3]}]},
            {"op": "remove", "path": f'members[value eq "{ids[3]}"]'},
        ):
            withdrawn = client.patch(
                f"/Groups/{gid}",
                json=patch({"op": "add", "path": "members", "value": [{"value": ids[3]}]}, remove),
            )
            assert withdrawn.status_code == 200, withdrawn.text
            assert {m["value"] for m in withdrawn.json()["members"]} == {ids[2]}
            assert _members(client, gid) == {ids[2]}
        readded = client.patch(
            f"/Groups/{gid}",
            json=patch(
                {"op": "add", "path": "members", "value": [{"value": ids[3]}]},
                {"op": "remove", "path": "members", "value": [{"value": ids[3]}, {"value": ids[2]}]},
                {"op": "add", "path": "members", "value": [{"value": ids[3]}]},
            ),
        )
        assert readded.status_code == 200, readded.text
        assert _members(client, gid) == {ids[3]}
        client.patch(
            f"/Groups/{gid}",
            json=patch(
                {"op": "remove", "path": "members", "value": [{"value": ids[3]}]},
                {"op": "add", "path": "members", "value": [{"value": ids[2]}, {"value": ids[3]}]},
            ),
        )
        assert _members(client, gid) == {ids[2], ids[3]}
        # A member added then removed is still checked: an unknown id is refused, nothing applied.
        unknown = client.patch(
            f"/Groups/{gid}",
            json=patch(
                {"op": "remove", "path": "members", "value": [{"value": ids[2]}]},
                {"op": "add", "path": "members", "value": [{"value": "nobody"}]},
                {"op": "remove", "path": "members", "value": [{"value": "nobody"}]},
            ),
        )
        assert unknown.status_code == 400 and unknown.json()["scimType"] == "invalidValue", unknown.text
        assert _members(client, gid) == {ids[2], ids[3]}
        client.patch(f"/Groups/{gid}", json=patch({"op": "remove", "path": "members", "value": [{"value": ids[3]}]}))
        # Replace all, and a rename without path with the id inside the value (Authentik).
        client.patch(
            f"/Groups/{gid}",
            json=patch({"op": "replace", "path": "members", "value": [{"value": ids[3]}, {"value": ids[0]}]}),
        )
        assert _members(client, gid) == {ids[3], ids[0]}
        renamed = client.patch(
            f"/Groups/{gid}",
            json={"Operations": [{"op": "replace", "value": {"id": gid, "displayName": "renamed"}}]},
        )
        assert renamed.status_code == 200 and renamed.json()["displayName"] == "renamed"
        assert {m["value"] for m in renamed.json()["members"]} == {ids[3], ids[0]}
        # Remove all members.
        client.patch(f"/Groups/{gid}", json=patch({"op": "remove", "path": "members"}))
        assert _members(client, gid) == set()
        # A user's groups attribute follows membership.
        client.patch(
            f"/Groups/{gid}", json=patch({"op": "add", "path": "members", "value": [{"value": ids[2]}]})
        )
        assert [g["value"] for g in client.get(f"/Users/{ids[2]}").json()["groups"]] == [gid]
        # excludedAttributes=members leaves them out.
        assert "members" not in client.get(f"/Groups/{gid}", params={"excludedAttributes": "members"}).json()


def test_deleting_a_user_removes_it_from_every_group(live: Live) -> None:
    with live.client() as client:
        uid = client.post("/Users", json={"schemas": [USER], "userName": "leaver"}).json()["id"]
        stay = client.post("/Users", json={"schemas": [USER], "userName": "stayer"}).json()["id"]
        groups = [
            client.post(
                "/Groups",
                json={
                    "schemas": [GROUP],
                    "displayName": f"g{i}",
                    "members": [{"value": uid}, {"value": stay}],
                },
            ).json()
            for i in range(2)
        ]
        assert client.delete(f"/Users/{uid}").status_code == 204
        assert client.get(f"/Users/{uid}").status_code == 404
        for group in groups:
            after = client.get(f"/Groups/{group['id']}").json()
            assert {m["value"] for m in after["members"]} == {stay}
            assert after["meta"]["version"] != group["meta"]["version"]
        found = client.get("/Groups", params={"filter": f'members.value eq "{uid}"'}).json()
        assert found["totalResults"] == 0


def test_etags_and_if_match(live: Live) -> None:
    with live.client() as client:
        created = client.post("/Users", json={"schemas": [USER], "userName": "etag"})
        uid, version = created.json()["id"], created.headers["ETag"]
        stale = client.put(
            f"/Users/{uid}",
            headers={"If-Match": 'W/"41"'},
            json={"schemas": [USER], "userName": "etag", "displayName": "x"},
        )
        assert stale.status_code == 412
        fresh = client.put(
            f"/Users/{uid}",
            headers={"If-Match": version},
            json={"schemas": [USER], "userName": "etag", "displayName": "x"},
        )
        assert fresh.status_code == 200 and fresh.headers["ETag"] != version
        assert (
            client.get(f"/Users/{uid}", headers={"If-None-Match": fresh.headers["ETag"]}).status_code == 304
        )
        assert client.delete(f"/Users/{uid}", headers={"If-Match": version}).status_code == 412
        assert client.delete(f"/Users/{uid}", headers={"If-Match": fresh.headers["ETag"]}).status_code == 204


def test_filters_sorting_and_paging_over_http(live: Live) -> None:
    with live.client() as client:
        for i, (name, mail, kind) in enumerate(
            [
                ("Zoe", "zoe@x.example", "work"),
                ("adam", "adam@y.example", "home"),
                ("Mia", "mia@x.example", "work"),
            ]
        ):
            client.post(
                "/Users",
                json={
                    "schemas": [USER],
                    "userName": name,
                    "externalId": f"ext-{i}",
                    "emails": [{"value": mail, "type": kind, "primary": True}],
                },
            )
        found = client.get(
            "/Users",
            params={
                "filter": 'emails[type eq "work" and value co "@X."]',
                "sortBy": "userName",
                "sortOrder": "descending",
            },
        ).json()
        assert [u["userName"] for u in found["Resources"]] == ["Zoe", "Mia"]
        assert client.get("/Users", params={"filter": 'externalId eq "EXT-1"'}).json()["totalResults"] == 0
        assert client.get("/Users", params={"filter": 'externalId eq "ext-1"'}).json()["totalResults"] == 1
        assert (
            client.get("/Users", params={"filter": 'emails.value eq "MIA@x.example"'}).json()["totalResults"]
            == 1
        )
        page = client.get("/Users", params={"sortBy": "userName", "startIndex": 2, "count": 1}).json()
        assert page["totalResults"] == 3 and page["startIndex"] == 2
        assert [u["userName"] for u in page["Resources"]] == ["Mia"]
        search = client.post(
            "/Users/.search",
            json={
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                "filter": 'not (userName eq "zoe") and (userName sw "a" or userName ew "A")',
                "attributes": ["userName"],
            },
        ).json()
        assert [u["userName"] for u in search["Resources"]] == ["adam", "Mia"]
        assert set(search["Resources"][0]) <= {"schemas", "id", "userName", "meta"}
        injected = client.get("/Users", params={"filter": "userName eq \"x' OR '1'='1\""}).json()
        assert injected["totalResults"] == 0


def test_totals_of_pages_whether_or_not_the_count_is_needed(live: Live) -> None:
    """``totalResults`` is the number of matches for every page: a full page (the COUNT is run), the last
    partial page and an unpaged list (their end is the total), past the end, ``count=0``, and a start
    beyond what an OFFSET can hold (RFC 7644 §3.4.2.4)."""
    with live.client() as client:
        for index in range(5):
            assert client.post("/Users", json={"schemas": [USER], "userName": f"paged{index}"}).status_code == 201
        other = client.post("/Users", json={"schemas": [USER], "userName": "unpaged"}).json()

        def page(**params: Any) -> dict[str, Any]:
            response = client.get("/Users", params={"filter": 'userName sw "paged"', **params})
            assert response.status_code == 200, response.text
            return dict(response.json())

        names = lambda body: [u["userName"] for u in body["Resources"]]  # noqa: E731
        assert (page()["totalResults"], len(page()["Resources"])) == (5, 5)
        full = page(startIndex=1, count=2)
        assert (full["totalResults"], names(full)) == (5, ["paged0", "paged1"])
        last = page(startIndex=4, count=3)
        assert (last["totalResults"], names(last)) == (5, ["paged3", "paged4"])
        exact = page(startIndex=4, count=2)
        assert (exact["totalResults"], names(exact)) == (5, ["paged3", "paged4"])
        past = page(startIndex=9, count=3)
        assert (past["totalResults"], past["Resources"]) == (5, [])
        assert page(count=0)["totalResults"] == 5
        beyond = page(startIndex=2**63 + 5, count=1)
        assert (beyond["totalResults"], beyond["Resources"]) == (5, [])
        assert client.get("/Users").json()["totalResults"] == 6
        assert client.get("/Users", params={"startIndex": 6}).json()["Resources"][0]["id"] == other["id"]
