"""Issue 6, resilience 4: hostile input, property-based (hypothesis), against one live server (SQLite,
controller emulator) per module and a fresh source per test.

Invariants, for every request: never a 5xx, never a traceback; every error a SCIM Error whose status is
one of 400/401/404/409/412/413/415/429 (plus 405/501 for methods and endpoints that do not exist); no
change outside the request's own resource (a sentinel user of the same source and one of another source
are compared before and after); a refused write leaves its own resource unchanged; filters select exactly
what scim2-models' ``ScimFilter.match`` selects over the stored users.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scim2_models import ScimFilter

from app.config import Config, PolicyConfig, SafetyConfig, SourceConfig, ZitiConfig, hash_token
from app.scim.provider import load_provider
from app.server import create_app
from tests.resilience.res_hostile import (
    ENTERPRISE,
    SCIM_ERRORS,
    SPECIALS,
    bounded,
    check_answer,
    encode,
    forged_authorization,
    garbled_filter,
    hostile_text,
    json_values,
    mutated_user,
    patch_body,
    query_params,
    scim_filter,
    stable,
    url_path,
    valid_user,
)
from tests.resilience.res_support import GROUP, PATCH, USER, Controller, list_all, report, running_controller
from tests.support.live import live_server
from tests.support.stack import ADMIN_PASSWORD

SOURCES = 30
SCIM_JSON = {"Content-Type": "application/scim+json"}


@dataclass
class Hostile:
    url: str
    controller: Controller
    tokens: dict[str, str]
    free: list[str]

    def client(self, source: str) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.url}/scim/v2",
            headers={"Authorization": f"Bearer {self.tokens[source]}", **SCIM_JSON},
            timeout=60,
        )


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    database = tmp_path_factory.mktemp("hostile") / "hostile.db"
    tokens = {f"hostile-{i:02d}": f"hostile-token-{i:02d}-{uuid.uuid4().hex}" for i in range(SOURCES)}
    with running_controller() as controller:
        config = Config(
            database_url=str(database),
            sources={
                name: SourceConfig(name=name, kind="generic", token_hashes=(hash_token(token),),
                                   policy=PolicyConfig(), mapping={"preset": "generic"})
                for name, token in tokens.items()
            },
            ziti=ZitiConfig(url=controller.url, username="admin", password=ADMIN_PASSWORD, reconcile_deadline=0.5),
            safety=SafetyConfig(brake_max=100_000, brake_min=100_000),
        )
        with live_server(create_app(config)) as url:
            yield Hostile(url, controller, tokens, sorted(tokens))


@dataclass
class Arena:
    """A fresh source with a target user T, a group G (T a member) and a sentinel user S; and a sentinel
    S2 in another source. Only T (or G) may change."""

    client: httpx.Client
    other: httpx.Client
    source: str
    target: str
    group: str
    sentinel: str
    other_sentinel: str
    before: dict[str, Any]
    before_other: dict[str, Any]
    taken: list[str]
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)

    def send(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
             headers: dict[str, str] | None = None, params: dict[str, str] | None = None,
             allowed: set[int] | None = None) -> httpx.Response:
        content = raw if raw is not None else (encode(body) if body is not None else None)
        if params:
            # Encoded here: lone surrogates travel as their (invalid) UTF-8 bytes.
            path += "?" + "&".join(
                f"{quote(k.encode('utf-8', 'surrogatepass'))}={quote(v.encode('utf-8', 'surrogatepass'), safe='')}"
                for k, v in params.items()
            )
        response = self.client.request(method, path, content=content, headers=headers)
        self.requests += 1
        self.statuses[response.status_code] += 1
        check_answer(response, allowed)
        return response

    def user(self, user_id: str, client: httpx.Client | None = None) -> dict[str, Any]:
        response = (client or self.client).get(f"/Users/{user_id}")
        assert response.status_code == 200, response.text
        return stable(response.json())

    def assert_sentinels(self, *, other: bool = False) -> None:
        assert self.user(self.sentinel) == self.before, "a request changed another user of its source"
        if other:
            assert self.user(self.other_sentinel, self.other) == self.before_other, "another source changed"

    def summary(self, scenario: str, examples: int, **extra: Any) -> None:
        errors = sum(count for status, count in self.statuses.items() if status >= 400)
        report(scenario, operations=self.requests, examples=examples, errors=errors,
               statuses="/".join(f"{s}:{c}" for s, c in sorted(self.statuses.items())),
               server_errors=0, sentinels_unchanged=True, **extra)


@pytest.fixture
def arena(hostile: Hostile) -> Iterator[Arena]:
    source, other_source = hostile.free.pop(), hostile.free.pop()
    client, other = hostile.client(source), hostile.client(other_source)
    suffix = uuid.uuid4().hex[:8]
    created = {}
    for name, scim in (("target", client), ("sentinel", client), ("other", other)):
        response = scim.post("/Users", json=valid_user(f"{name}-{suffix}", f"{name}-{suffix}@example.com"))
        assert response.status_code == 201, response.text
        created[name] = response.json()["id"]
    group = client.post("/Groups", json={"schemas": [GROUP], "displayName": f"group-{suffix}",
                                          "members": [{"value": created["target"]}]})
    assert group.status_code == 201, group.text
    taken = [f"sentinel-{suffix}", f"sentinel-{suffix}@example.com", f"other-{suffix}", f"other-{suffix}@example.com"]
    before = stable(client.get(f"/Users/{created['sentinel']}").json())
    before_other = stable(other.get(f"/Users/{created['other']}").json())
    yield Arena(client, other, source, created["target"], group.json()["id"], created["sentinel"], created["other"],
                before, before_other, taken)
    client.close()
    other.close()


# -- payloads -----------------------------------------------------------------------------------------


def test_mutated_users_created(arena: Arena) -> None:
    examples = 0

    @given(user=mutated_user(arena.taken))
    @bounded(60)
    def run(user: dict[str, Any]) -> None:
        nonlocal examples
        examples += 1
        response = arena.send("POST", "/Users", user)
        if response.status_code == 201:
            stored = arena.client.get(f"/Users/{response.json()['id']}")
            assert stored.status_code == 200 and stored.json()["userName"] == response.json()["userName"]
        arena.assert_sentinels()

    run()
    arena.assert_sentinels(other=True)
    arena.summary("hostile-mutated-creates", examples)


def test_mutated_users_replacing_the_target(arena: Arena) -> None:
    examples = 0

    @given(user=mutated_user(arena.taken))
    @bounded(50)
    def run(user: dict[str, Any]) -> None:
        nonlocal examples
        examples += 1
        before = arena.user(arena.target)
        response = arena.send("PUT", f"/Users/{arena.target}", user)
        if response.status_code >= 400:
            assert arena.user(arena.target) == before, "a refused PUT changed its resource"
        arena.assert_sentinels()

    run()
    arena.assert_sentinels(other=True)
    arena.summary("hostile-mutated-replaces", examples)


raw_bodies = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda b, n: b[:n], st.sampled_from([encode(valid_user("raw", "raw@example.com"))]), st.integers(0, 200)),
    st.builds(lambda depth, bracket: bracket[0].encode() * depth + bracket[1].encode() * depth,
              st.integers(100, 300_000), st.sampled_from(["[]", "{}"])).map(
        lambda nested: nested if nested.startswith(b"[") else b'{"a":' * (len(nested) // 2) + b"1" + b"}" * (len(nested) // 2)
    ),
    st.sampled_from([
        b"", b"null", b"[]", b'"string"', b"1e999999", b"NaN", b'{"schemas": NaN}', b"\xef\xbb\xbf{}",
        b'{"userName": "a", "userName": "b", "schemas": ["' + USER.encode() + b'"]}',
        b'{"schemas": ["' + USER.encode() + b'"], "userName": "\\ud800"}',
        b'{"schemas": ["' + USER.encode() + b'"], "userName": "\xff\xfe"}',
        b'{"schemas": ["' + USER.encode() + b'"], "userName": "' + b"9" * 5000 + b'"}',
        b'{"schemas": ["' + USER.encode() + b'"], "emails": [' + b"{}," * 50_000 + b"{}]}",
    ]),
    json_values(20).map(encode),
)


def test_raw_bodies_and_content_types(arena: Arena) -> None:
    examples = 0

    @given(
        body=raw_bodies,
        target=st.sampled_from(["POST /Users", "PUT T", "PATCH T", "POST /Groups", "PATCH G", "POST /.search"]),
        content_type=st.sampled_from(["application/scim+json", "application/json", "application/scim+json; charset=utf-8",
                                      "text/plain", "application/x-www-form-urlencoded", "", "application/scim+json; charset=latin-1"]),
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
    values: list[Any] = [*arena.taken, True, False, None, [{"value": "vpn"}], {"displayName": "x"},
                         [{"value": arena.taken[1], "primary": True}], *SPECIALS[:20]]

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
        [{"value": arena.target}], [{"value": arena.other_sentinel}], [{"value": str(uuid.uuid4())}],
        [{"value": arena.target}, {"value": "x" * 300}], {"value": arena.target}, [{"value": None}], [arena.target],
    ]
    paths = ["members", f'members[value eq "{arena.target}"]', f'members[value eq "{arena.other_sentinel}"]',
             'members[value pr]', "displayName", "members.value", "members[", "externalId"]
    operation = st.fixed_dictionaries(
        {"op": st.sampled_from(["add", "remove", "replace", "Add"])},
        optional={"path": st.one_of(st.sampled_from(paths), hostile_text), "value": st.one_of(st.sampled_from(members), json_values(6))},
    )

    @given(operations=st.lists(operation, max_size=4))
    @bounded(60)
    def run(operations: list[dict[str, Any]]) -> None:
        nonlocal examples
        examples += 1
        before = arena.client.get(f"/Groups/{arena.group}").json()
        response = arena.send("PATCH", f"/Groups/{arena.group}", {"schemas": [PATCH], "Operations": operations})
        after = arena.client.get(f"/Groups/{arena.group}").json()
        if response.status_code >= 400:
            assert after == before, "a refused group PATCH changed (part of) the group"
        assert arena.other_sentinel not in {m.get("value") for m in after.get("members", [])}
        arena.assert_sentinels()

    run()
    arena.assert_sentinels(other=True)
    arena.summary("hostile-patch-group", examples)


# -- filters ----------------------------------------------------------------------------------------

POPULATION = [
    ("alice", "Alice@Example.com", {"displayName": "Alice Smith", "active": True, "roles": [{"value": "vpn"}]}),
    ("Stra\u00dfe", "strasse@example.com", {"displayName": "STRASSE", "name": {"familyName": "M\u00fcller"}}),
    ("STRASSE-2", "s2@example.com", {"displayName": "stra\u00dfe", "active": False}),
    ("\u0130stanbul", "ist@example.com", {"nickName": "i\u0307stanbul", "name": {"familyName": "\u0131\u015f\u0131k"}}),
    ("\u212aelvin", "kelvin@example.com", {"displayName": "kelvin"}),
    ("cafe\u0301", "nfd@example.com", {"displayName": "caf\u00e9", "nickName": "cafe\u0301"}),
    ("\u202eevil", "rtl@example.com", {"displayName": "\u202elive\u202c"}),
    ("zero\u200bwidth", "zw@example.com", {"title": "\u200b"}),
    ("' OR 1=1 --", "sqli@example.com", {"displayName": '"; DROP TABLE resources; --'}),
    ("percent%", "pct@example.com", {"displayName": "100%_done\\"}),
    ("under_score", "us@example.com", {"displayName": "a_b"}),
    ('{"$ne": null}', "json@example.com", {"displayName": "null"}),
    ("nul\u0000byte", "nul@example.com", {"displayName": "x\u0000y"}),
    ("emoji\U0001f600", "emoji@example.com", {"displayName": "\U0001f600\U0001f600"}),
    ("\u0627\u0644\u0639\u0631\u0628\u064a\u0629", "ar@example.com", {"displayName": "\u05e9\u05dc\u05d5\u05dd"}),
    ("multi", "Multi@Example.COM", {"emails": [{"value": "Multi@Example.COM", "type": "work", "primary": True},
                                               {"value": "home@multi.org", "type": "home"},
                                               {"value": "other@MULTI.org"}],
                                    "roles": [{"value": "Ops", "primary": True}, {"value": "vpn"}]}),
    ("enterprise", "ent@example.com", {ENTERPRISE: {"department": "Ops", "employeeNumber": "007",
                                                    "manager": {"value": "boss"}}}),
    ("bare", "bare@example.com", {}),
    ("ZZZ", "zzz@example.com", {"displayName": "aaa", "active": True}),
]


def test_filters_select_what_scim2_models_selects(arena: Arena) -> None:
    for name, email, extra in POPULATION:
        body = {"schemas": [USER, ENTERPRISE], "userName": name,
                "emails": [{"value": email, "type": "work", "primary": True}], **extra}
        assert arena.client.post("/Users", json=body).status_code == 201, name
    ids = {u["userName"]: u["id"] for u in list_all(arena.client, "Users")}
    for members in (["alice", "multi", "' OR 1=1 --"], ["Stra\u00dfe", "\u212aelvin"]):
        group = {"schemas": [GROUP], "displayName": "Grp " + members[0], "members": [{"value": ids[m]} for m in members]}
        assert arena.client.post("/Groups", json=group).status_code == 201
    model = load_provider().model_for("User")
    assert model is not None
    users = [model.model_validate(u) for u in list_all(arena.client, "Users")]
    pool = sorted({v for u in list_all(arena.client, "Users") for v in _strings(u)} | set(SPECIALS[:-6]))
    outcome: Counter[str] = Counter()
    examples = 0

    @given(text=st.one_of(scim_filter(pool), scim_filter(pool), garbled_filter(pool)),
           endpoint=st.sampled_from(["GET", "POST /.search", "POST /Users/.search"]))
    @bounded(160)
    def run(text: str, endpoint: str) -> None:
        nonlocal examples
        examples += 1
        if endpoint == "GET":
            response = arena.send("GET", "/Users", params={"filter": text, "count": "1000"})
        else:
            response = arena.send("POST", endpoint.split(" ")[1], {
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": text, "count": 1000,
            })
        try:
            reference = ScimFilter[model](text)  # type: ignore[valid-type]
        except Exception:  # noqa: BLE001 - any refusal of the reference
            reference = None
        if response.status_code != 200:
            assert response.status_code == 400, response.text
            outcome["refused" if reference is None else "refused-valid-for-reference"] += 1
            if reference is not None and os.environ.get("RESILIENCE_DEBUG"):
                print("REFUSED", text, response.json().get("detail"))
            return
        found = {r["id"] for r in response.json()["Resources"] if r.get("meta", {}).get("resourceType", "User") == "User"}
        if reference is None:
            outcome["accepted-invalid-for-reference"] += 1
            return
        expected = {u.id for u in users if reference.match(u)}
        assert found == expected, (
            f"filter {text!r}: server selected {sorted(_names(found, ids))}, "
            f"scim2-models selects {sorted(_names(expected, ids))}"
        )
        outcome["compared"] += 1
        outcome["compared-nonempty"] += bool(expected)

    run()
    arena.assert_sentinels(other=True)
    assert outcome["compared-nonempty"] > 10, outcome
    arena.summary("hostile-filters", examples, users=len(users), **{k.replace("-", "_"): v for k, v in outcome.items()})


NULL_ON_MULTI_VALUED = (
    "filter mismatch: `eq null` / `ne null` on a sub-attribute of a multi-valued attribute ignore users "
    "that do not have the attribute at all (RFC 7643 §2.5: unassigned = null): `roles.primary ne null` "
    "matches a user without roles, `roles.primary eq null` and `roles eq null` do not; "
    "app/store/filters.py Translator._compare_elements builds EXISTS(element IS NULL) / NOT EXISTS(...) "
    "over the array, whereas scim2-models' ScimFilter.match treats the absent attribute as null"
)


@pytest.mark.xfail(strict=True, reason=NULL_ON_MULTI_VALUED)
def test_null_comparisons_on_multi_valued_attributes(arena: Arena) -> None:
    for name, extra in (("noroles", {}), ("role-noprimary", {"roles": [{"value": "vpn"}]}),
                        ("role-primary", {"roles": [{"value": "vpn", "primary": True}]})):
        body = {"schemas": [USER], "userName": name, "emails": [{"value": f"{name}@example.com"}], **extra}
        assert arena.client.post("/Users", json=body).status_code == 201
    model = load_provider().model_for("User")
    assert model is not None
    users = [model.model_validate(u) for u in list_all(arena.client, "Users")]
    wrong = {}
    for text in ("roles.primary eq null", "roles.primary ne null", "not (roles.primary eq null)", "roles eq null",
                 "roles.value eq null", "emails.primary ne null"):
        server = {u["userName"] for u in arena.send("GET", "/Users", params={"filter": text}).json()["Resources"]}
        reference = {u.user_name for u in users if ScimFilter[model](text).match(u)}  # type: ignore[valid-type]
        if server != reference:
            wrong[text] = (sorted(server), sorted(reference))
    assert wrong == {}, wrong


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if len(value) < 100 else []
    if isinstance(value, dict):
        return [s for k, v in value.items() if k not in ("meta", "id", "$ref", "location") for s in _strings(v)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def _names(found: set[str], ids: dict[str, str]) -> list[str]:
    names = {v: k for k, v in ids.items()}
    return [names.get(i, i) for i in found]


# -- paths, methods, queries ------------------------------------------------------------------------


def test_paths_methods_and_queries(arena: Arena) -> None:
    examples = 0

    @given(method=st.sampled_from(["GET", "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]),
           path=url_path([arena.target, arena.group, arena.other_sentinel, arena.sentinel]),
           params=query_params, body=st.one_of(st.none(), json_values(6)))
    @bounded(100)
    def run(method: str, path: str, params: dict[str, str], body: Any) -> None:
        nonlocal examples
        examples += 1
        # Never DELETE the sentinel itself (that would be the request's own resource).
        if method in ("DELETE", "PUT", "PATCH", "POST") and arena.sentinel in path:
            return
        arena.send(method, path, body, params=params, allowed=SCIM_ERRORS | {405, 501})
        arena.assert_sentinels()

    run()
    arena.assert_sentinels(other=True)
    assert arena.client.get(f"/Users/{arena.other_sentinel}").status_code == 404
    arena.summary("hostile-paths", examples)


CONTROL_IN_PATH = (
    "dropped connection: a control character in the URL path (GET /Users/a%00b) makes scim2-server's "
    "finalize_response copy the decoded request URL into the Location header (app/scim/router.py "
    "ScimRouter.__call__ -> app.finalize_response); h11 refuses the header value, the ASGI app raises "
    "LocalProtocolError and the client gets no response at all (uvicorn logs the traceback)"
)


@pytest.mark.xfail(strict=True, reason=CONTROL_IN_PATH)
def test_control_character_in_the_url_path_is_a_scim_error(arena: Arena) -> None:
    for path in ("/Users/a%00b", "/Groups/%0a", "/Users/%1b[31m"):
        arena.send("GET", path)


# -- authentication -----------------------------------------------------------------------------------


def test_forged_tokens_never_pass(hostile: Hostile, arena: Arena) -> None:
    token = hostile.tokens[arena.source]
    valid = {f"Bearer {t}" for t in hostile.tokens.values()}
    examples = 0
    kinds: Counter[str] = Counter()

    @given(authorization=forged_authorization(token),
           request=st.sampled_from([("GET", "/Users"), ("GET", f"/Users/{arena.sentinel}"),
                                    ("DELETE", f"/Users/{arena.sentinel}"), ("POST", "/Users"),
                                    ("PATCH", f"/Users/{arena.sentinel}"), ("GET", "/Groups")]))
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
        response = httpx.request(method, f"{hostile.url}/scim/v2{path}", content=body,
                                 headers={"Authorization": authorization.encode("utf-8"), **SCIM_JSON}, timeout=30)
        arena.requests += 1
        arena.statuses[response.status_code] += 1
        assert response.status_code == 401, (authorization, response.status_code, response.text[:200])
        assert response.headers.get("WWW-Authenticate", "").startswith("Bearer"), response.headers
        check_answer(response)

    run()
    arena.assert_sentinels(other=True)
    arena.summary("auth-forged-tokens", examples)


def test_other_sources_tokens_see_nothing_of_this_source(hostile: Hostile, arena: Arena) -> None:
    requests = 0
    for name, token in hostile.tokens.items():
        if name == arena.source:
            continue
        with httpx.Client(base_url=f"{hostile.url}/scim/v2",
                          headers={"Authorization": f"Bearer {token}", **SCIM_JSON}, timeout=30) as other:
            for method, path, body in (
                ("GET", f"/Users/{arena.sentinel}", None),
                ("PUT", f"/Users/{arena.sentinel}", valid_user("stolen", "stolen@example.com")),
                ("PATCH", f"/Users/{arena.sentinel}", {"schemas": [PATCH], "Operations": [
                    {"op": "replace", "path": "active", "value": False}]}),
                ("DELETE", f"/Users/{arena.sentinel}", None),
                ("GET", f"/Groups/{arena.group}", None),
                ("PATCH", f"/Groups/{arena.group}", {"schemas": [PATCH], "Operations": [
                    {"op": "add", "path": "members", "value": [{"value": arena.sentinel}]}]}),
            ):
                response = other.request(method, path, content=encode(body) if body is not None else None)
                requests += 1
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
    report("auth-other-sources", operations=requests, sources=len(hostile.tokens) - 1, passed=0,
           sentinels_unchanged=True)

