"""Issue 6, resilience 4: hostile input, property-based (hypothesis), against one live server (SQLite,
controller emulator) per module and a fresh source per test.

Invariants, for every request: never a 5xx, never a traceback; every error a SCIM Error whose status is
one of 400/401/404/409/412/413/415/429 (plus, for random paths, 405/501 for methods and endpoints that
do not exist and 403 for a filter on a discovery endpoint, RFC 7644 §4); no
change outside the request's own resource (a sentinel user of the same source and one of another source
are compared before and after); a refused write leaves its own resource unchanged; filters select exactly
what scim2-models' ``ScimFilter.match`` selects over the stored users.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any, cast

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scim2_models import ScimFilter, User

from app.scim.provider import load_provider
from tests.resilience.res_arena import (
    POPULATION,
    SCIM_JSON,
    Arena,
    Hostile,
    assert_past_the_end,
    check_filters,
    hostile_server,
    make_arena,
)
from tests.resilience.res_hostile import (
    SCIM_ERRORS,
    SPECIALS,
    bounded,
    check_answer,
    encode,
    forged_authorization,
    hostile_text,
    json_values,
    mutated_user,
    patch_body,
    query_params,
    url_path,
    valid_user,
)
from tests.resilience.res_support import PATCH, USER, list_all, report

SOURCES = 40


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    with hostile_server(str(tmp_path_factory.mktemp("hostile") / "hostile.db"), SOURCES) as server:
        yield server


@pytest.fixture
def arena(hostile: Hostile) -> Iterator[Arena]:
    with make_arena(hostile) as fresh:
        yield fresh


# -- payloads -----------------------------------------------------------------------------------------


def test_mutated_users_created(arena: Arena) -> None:
    examples = accepted = 0

    @given(user=mutated_user(arena.taken))
    @bounded(60)
    def run(user: dict[str, Any]) -> None:
        nonlocal examples, accepted
        examples += 1
        response = arena.send("POST", "/Users", user)
        if response.status_code == 201:
            accepted += 1
            stored = arena.client.get(f"/Users/{response.json()['id']}")
            assert stored.status_code == 200 and stored.json()["userName"] == response.json()["userName"]
        arena.assert_sentinels()

    run()
    arena.assert_sentinels(other=True)
    # A server refusing everything would pass the checks above: most mutations keep a valid user.
    assert accepted >= examples // 6, f"only {accepted} of {examples} mutated users were accepted"
    arena.summary("hostile-mutated-creates", examples, accepted=accepted)


def test_mutated_users_replacing_the_target(arena: Arena) -> None:
    examples = accepted = 0

    @given(user=mutated_user(arena.taken))
    @bounded(50)
    def run(user: dict[str, Any]) -> None:
        nonlocal examples, accepted
        examples += 1
        before = arena.user(arena.target)
        response = arena.send("PUT", f"/Users/{arena.target}", user)
        if response.status_code >= 400:
            assert arena.user(arena.target) == before, "a refused PUT changed its resource"
        else:
            accepted += 1
            stored = arena.client.get(f"/Users/{arena.target}").json()
            assert stored["userName"] == response.json()["userName"], "the accepted PUT is not what is stored"
        arena.assert_sentinels()

    run()
    arena.assert_sentinels(other=True)
    assert accepted >= examples // 4, f"only {accepted} of {examples} replacements were accepted"
    arena.summary("hostile-mutated-replaces", examples, accepted=accepted)


raw_bodies = st.one_of(
    st.binary(max_size=200),
    st.builds(
        lambda b, n: b[:n],
        st.sampled_from([encode(valid_user("raw", "raw@example.com"))]),
        st.integers(0, 200),
    ),
    st.builds(
        lambda depth, bracket: bracket[0].encode() * depth + bracket[1].encode() * depth,
        st.integers(100, 300_000),
        st.sampled_from(["[]", "{}"]),
    ).map(
        lambda nested: (
            nested
            if nested.startswith(b"[")
            else b'{"a":' * (len(nested) // 2) + b"1" + b"}" * (len(nested) // 2)
        )
    ),
    st.sampled_from(
        [
            b"",
            b"null",
            b"[]",
            b'"string"',
            b"1e999999",
            b"NaN",
            b'{"schemas": NaN}',
            b"\xef\xbb\xbf{}",
            b'{"userName": "a", "userName": "b", "schemas": ["' + USER.encode() + b'"]}',
            b'{"schemas": ["' + USER.encode() + b'"], "userName": "\\ud800"}',
            b'{"schemas": ["' + USER.encode() + b'"], "userName": "\xff\xfe"}',
            b'{"schemas": ["' + USER.encode() + b'"], "userName": "' + b"9" * 5000 + b'"}',
            b'{"schemas": ["' + USER.encode() + b'"], "emails": [' + b"{}," * 50_000 + b"{}]}",
        ]
    ),
    json_values(20).map(encode),
)


def test_raw_bodies_and_content_types(arena: Arena) -> None:
    examples = 0

    @given(
        body=raw_bodies,
        target=st.sampled_from(
            ["POST /Users", "PUT T", "PATCH T", "POST /Groups", "PATCH G", "POST /.search"]
        ),
        content_type=st.sampled_from(
            [
                "application/scim+json",
                "application/json",
                "application/scim+json; charset=utf-8",
                "text/plain",
                "application/x-www-form-urlencoded",
                "",
                "application/scim+json; charset=latin-1",
            ]
        ),
    )
    @bounded(80)
    def run(body: bytes, target: str, content_type: str) -> None:
        nonlocal examples
        examples += 1
        method, _, path = target.partition(" ")
        path = {"T": f"/Users/{arena.target}", "G": f"/Groups/{arena.group}"}.get(path, path)
        before = arena.user(arena.target)
        response = arena.send(method, path, raw=body, headers={"Content-Type": content_type})
        if response.status_code >= 400 and path.endswith(arena.target):
            assert arena.user(arena.target) == before
        arena.assert_sentinels()

    run()
    arena.assert_sentinels(other=True)
    arena.summary("hostile-raw-bodies", examples)


def test_huge_strings_under_and_over_the_body_limit(arena: Arena) -> None:
    limit = 1024 * 1024
    cases = []
    for chunk in ("a", "\u00df", "\U0001f600", "' OR 1=1 --"):
        for size in (limit - 4096, limit + 1, 4 * limit):
            user = valid_user("huge", "huge@example.com")
            user["displayName"] = chunk * (size // len(encode(chunk)))
            cases.append(encode(user)[: size + 200] if size > limit else encode(user))
    for body in cases:
        response = arena.send("PUT", f"/Users/{arena.target}", raw=body)
        assert (response.status_code == 413) == (len(body) > limit), (len(body), response.status_code)
    # A body announced as small but sent large, and one announced as huge.
    huge = encode({"schemas": [USER], "userName": "x" * (2 * limit)})
    assert arena.send("POST", "/Users", raw=huge).status_code == 413
    arena.assert_sentinels(other=True)
    arena.summary("hostile-huge-bodies", len(cases) + 1)


# -- PATCH ------------------------------------------------------------------------------------------


def test_patch_operations_on_a_user(arena: Arena) -> None:
    examples = 0
    values: list[Any] = [
        *arena.taken,
        True,
        False,
        None,
        [{"value": "vpn"}],
        {"displayName": "x"},
        [{"value": arena.taken[1], "primary": True}],
        *SPECIALS[:20],
    ]

    @given(body=patch_body(values))
    @bounded(90)
    def run(body: Any) -> None:
        nonlocal examples
        examples += 1
        before = arena.user(arena.target)
        response = arena.send("PATCH", f"/Users/{arena.target}", body)
        if response.status_code >= 400:
            assert arena.user(arena.target) == before, "a refused PATCH changed (part of) its resource"
        arena.assert_sentinels()

    run()
    arena.assert_sentinels(other=True)
    arena.summary("hostile-patch-user", examples)


def test_patch_operations_on_a_group(arena: Arena) -> None:
    examples = 0
    members: list[Any] = [
        [{"value": arena.target}],
        [{"value": arena.other_sentinel}],
        [{"value": str(uuid.uuid4())}],
        [{"value": arena.target}, {"value": "x" * 300}],
        {"value": arena.target},
        [{"value": None}],
        [arena.target],
    ]
    paths = [
        "members",
        f'members[value eq "{arena.target}"]',
        f'members[value eq "{arena.other_sentinel}"]',
        "members[value pr]",
        "displayName",
        "members.value",
        "members[",
        "externalId",
    ]
    operation = st.fixed_dictionaries(
        {"op": st.sampled_from(["add", "remove", "replace", "Add"])},
        optional={
            "path": st.one_of(st.sampled_from(paths), hostile_text),
            "value": st.one_of(st.sampled_from(members), json_values(6)),
        },
    )

    @given(operations=st.lists(operation, max_size=4))
    @bounded(60)
    def run(operations: list[dict[str, Any]]) -> None:
        nonlocal examples
        examples += 1
        before = arena.client.get(f"/Groups/{arena.group}").json()
        response = arena.send(
            "PATCH", f"/Groups/{arena.group}", {"schemas": [PATCH], "Operations": operations}
        )
        after = arena.client.get(f"/Groups/{arena.group}").json()
        if response.status_code >= 400:
            assert after == before, "a refused group PATCH changed (part of) the group"
        assert arena.other_sentinel not in {m.get("value") for m in after.get("members", [])}
        arena.assert_sentinels()

    run()
    arena.assert_sentinels(other=True)
    arena.summary("hostile-patch-group", examples)


# -- filters ----------------------------------------------------------------------------------------


def test_filters_select_what_scim2_models_selects(arena: Arena) -> None:
    check_filters(arena, POPULATION, 160, "hostile-filters[sqlite]")


def test_nul_is_refused_everywhere(arena: Arena) -> None:
    """NUL (U+0000) is refused with 400 on every database alike (PostgreSQL cannot store it), in bodies,
    PATCH values and query parameters; nothing is stored."""
    nul_user = {"schemas": [USER], "userName": "nul\u0000name", "emails": [{"value": "nul@example.com"}]}
    assert arena.send("POST", "/Users", nul_user).status_code == 400
    before = arena.user(arena.target)
    patch = {
        "schemas": [PATCH],
        "Operations": [{"op": "replace", "path": "displayName", "value": "a\u0000b"}],
    }
    assert arena.send("PATCH", f"/Users/{arena.target}", patch).status_code == 400
    assert (
        arena.send(
            "PUT", f"/Users/{arena.target}", {**valid_user("x", "x@example.com"), "nickName": "\u0000"}
        ).status_code
        == 400
    )
    assert arena.user(arena.target) == before
    assert arena.send("GET", "/Users", params={"filter": 'userName eq "a\u0000"'}).status_code == 400
    assert arena.send("GET", "/Users", params={"filter": 'userName eq "\\u0000"'}).status_code in (200, 400)
    arena.assert_sentinels(other=True)


def test_null_comparisons_on_multi_valued_attributes(arena: Arena) -> None:
    """Regression (found by the filter property test): `eq null` / `ne null` on a multi-valued attribute's
    sub-attribute must treat a user without the attribute as null (RFC 7643 §2.5), as ScimFilter.match
    does; `roles.primary ne null` used to match users without roles (app/store/filters.py)."""
    for name, extra in (
        ("noroles", {}),
        ("role-noprimary", {"roles": [{"value": "vpn"}]}),
        ("role-primary", {"roles": [{"value": "vpn", "primary": True}]}),
    ):
        body = {"schemas": [USER], "userName": name, "emails": [{"value": f"{name}@example.com"}], **extra}
        assert arena.client.post("/Users", json=body).status_code == 201
    model = cast("type[User[Any]] | None", load_provider().model_for("User"))
    assert model is not None
    users = [model.model_validate(u) for u in list_all(arena.client, "Users")]
    wrong = {}
    for text in (
        "roles.primary eq null",
        "roles.primary ne null",
        "not (roles.primary eq null)",
        "roles eq null",
        "roles.value eq null",
        "emails.primary ne null",
    ):
        server = {
            u["userName"] for u in arena.send("GET", "/Users", params={"filter": text}).json()["Resources"]
        }
        reference = {str(u.user_name) for u in users if ScimFilter[model](text).match(u)}  # type: ignore[valid-type]
        if server != reference:
            wrong[text] = (sorted(server), sorted(reference))
    assert wrong == {}, wrong


# -- paths, methods, queries ------------------------------------------------------------------------


def test_paths_methods_and_queries(arena: Arena) -> None:
    examples = 0

    @given(
        method=st.sampled_from(["GET", "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]),
        path=url_path([arena.target, arena.group, arena.other_sentinel, arena.sentinel]),
        params=query_params,
        body=st.one_of(st.none(), json_values(6)),
    )
    @bounded(100)
    def run(method: str, path: str, params: dict[str, str], body: Any) -> None:
        nonlocal examples
        examples += 1
        # Never DELETE the sentinel itself (that would be the request's own resource).
        if method in ("DELETE", "PUT", "PATCH", "POST") and arena.sentinel in path:
            return
        arena.send(method, path, body, params=params, allowed=SCIM_ERRORS | {403, 405, 501})
        arena.assert_sentinels()

    run()
    arena.assert_sentinels(other=True)
    assert arena.client.get(f"/Users/{arena.other_sentinel}").status_code == 404
    arena.summary("hostile-paths", examples)


def test_huge_start_index_is_a_scim_error(arena: Arena) -> None:
    """Regression (found by the path property test): a startIndex past 2**63 reached the OFFSET of the
    search unclamped, a 500 on SQLite (OverflowError) and a 503 on PostgreSQL."""
    for endpoint in ("/Users", "/Groups", "/"):
        response = arena.send("GET", endpoint, params={"startIndex": "99999999999999999999"})
        assert_past_the_end(arena, response, endpoint)
    response = arena.send(
        "POST",
        "/.search",
        {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "startIndex": 10**20},
    )
    assert_past_the_end(arena, response, "/")
    arena.assert_sentinels()



def test_control_character_in_the_url_path_is_a_scim_error(arena: Arena) -> None:
    """Regression: a control character in the path was copied, decoded, into the Location header; h11
    refused it and the client got no answer at all (connection dropped)."""
    for path in ("/Users/a%00b", "/Groups/%0a", "/Users/%1b[31m", "/Users/%7f", "/Schemas/%00"):
        response = arena.send("GET", path)
        assert response.status_code == 404, response.text


def test_trailing_space_in_the_url_path_is_a_scim_error(arena: Arena) -> None:
    """Regression (found by the path property test): a path ending in a space was copied, decoded, into
    the Location header; h11 refused the trailing whitespace and the client got no answer."""
    for path in ("/Users/%20", "/Users/abc%20", "/Groups/%20"):
        response = arena.send("GET", path)
        assert response.status_code == 404, path


def test_newline_in_the_url_path_is_a_scim_error(arena: Arena) -> None:
    """Regression: a newline in the path fell through Mount('/scim') (its regex stops at a newline) to
    Starlette's plain-text 'Not Found', or reached the SCIM app with a mangled path."""
    for path in ("/Users/a%0Ab", "/Groups/%0A0", "/Users/%0A"):
        response = arena.send("GET", path)
        assert response.status_code == 404 and "/v2/v2/" not in response.headers.get("Location", ""), path


# -- authentication -----------------------------------------------------------------------------------


def test_forged_tokens_never_pass(hostile: Hostile, arena: Arena) -> None:
    token = hostile.tokens[arena.source]
    valid = {f"Bearer {t}" for t in hostile.tokens.values()}
    examples = 0
    kinds: Counter[str] = Counter()

    @given(
        authorization=forged_authorization(token),
        request=st.sampled_from(
            [
                ("GET", "/Users"),
                ("GET", f"/Users/{arena.sentinel}"),
                ("DELETE", f"/Users/{arena.sentinel}"),
                ("POST", "/Users"),
                ("PATCH", f"/Users/{arena.sentinel}"),
                ("GET", "/Groups"),
            ]
        ),
    )
    @bounded(120)
    def run(authorization: str, request: tuple[str, str]) -> None:
        nonlocal examples
        authorization = authorization.strip(" \t")  # surrounding whitespace is not part of a header value
        if authorization in valid or authorization.lower().replace("bearer ", "", 1).strip() == token:
            return
        examples += 1
        kinds[authorization.split(" ")[0][:10]] += 1
        method, path = request
        body = encode(valid_user("forged", "forged@example.com")) if method in ("POST", "PATCH") else None
        response = httpx.request(
            method,
            f"{hostile.url}/scim/v2{path}",
            content=body,
            headers=[
                (b"Authorization", authorization.encode("utf-8")),
                (b"Content-Type", b"application/scim+json"),
            ],
            timeout=30,
        )
        arena.requests += 1
        arena.statuses[response.status_code] += 1
        assert response.status_code == 401, (authorization, response.status_code, response.text[:200])
        assert response.headers.get("WWW-Authenticate", "").startswith("Bearer"), response.headers
        check_answer(response)

    run()
    arena.assert_sentinels(other=True)
    arena.summary("auth-forged-tokens", examples)


def test_other_sources_tokens_see_nothing_of_this_source(hostile: Hostile, arena: Arena) -> None:
    requests = passed = 0
    for name, token in hostile.tokens.items():
        if name == arena.source:
            continue
        with httpx.Client(
            base_url=f"{hostile.url}/scim/v2",
            headers={"Authorization": f"Bearer {token}", **SCIM_JSON},
            timeout=30,
        ) as other:
            for method, path, body in (
                ("GET", f"/Users/{arena.sentinel}", None),
                ("PUT", f"/Users/{arena.sentinel}", valid_user("stolen", "stolen@example.com")),
                (
                    "PATCH",
                    f"/Users/{arena.sentinel}",
                    {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": False}]},
                ),
                ("DELETE", f"/Users/{arena.sentinel}", None),
                ("GET", f"/Groups/{arena.group}", None),
                (
                    "PATCH",
                    f"/Groups/{arena.group}",
                    {
                        "schemas": [PATCH],
                        "Operations": [
                            {"op": "add", "path": "members", "value": [{"value": arena.sentinel}]}
                        ],
                    },
                ),
            ):
                response = other.request(method, path, content=encode(body) if body is not None else None)
                requests += 1
                passed += response.status_code != 404
                assert response.status_code == 404, (name, method, path, response.status_code)
                check_answer(response)
            listed = other.get("/Users", params={"filter": f'id eq "{arena.sentinel}"'})
            found = other.get("/Users", params={"count": "1000"}).json().get("Resources", [])
            requests += 2
            assert listed.json()["totalResults"] == 0
            assert arena.sentinel not in {u["id"] for u in found}
    arena.assert_sentinels(other=True)
    members = arena.client.get(f"/Groups/{arena.group}").json()["members"]
    assert [m["value"] for m in members] == [arena.target]
    report(
        "auth-other-sources",
        operations=requests,
        sources=len(hostile.tokens) - 1,
        passed=passed,
        sentinels_unchanged=arena.user(arena.sentinel) == arena.before,
    )
