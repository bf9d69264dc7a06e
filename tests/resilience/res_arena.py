"""The hostile-input test bed: one live server with many sources (one module, one server), an *arena*
per test (a fresh source with a target user, a group and sentinels), and the filter comparison with
scim2-models' reference semantics."""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import quote

import httpx
from hypothesis import example, given
from hypothesis import strategies as st
from scim2_models import Resource, ScimFilter

from app.config import Config, PolicyConfig, SafetyConfig, SourceConfig, ZitiConfig, hash_token
from app.scim.provider import load_provider
from app.server import create_app
from tests.resilience.res_hostile import (
    ENTERPRISE,
    SPECIALS,
    bounded,
    check_answer,
    encode,
    garbled_filter,
    scim_filter,
    stable,
    valid_user,
)
from tests.resilience.res_support import GROUP, USER, Controller, list_all, report, running_controller
from tests.support.emulator import ADMIN_PASSWORD
from tests.support.live import live_server

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


@contextmanager
def hostile_server(database_url: str, sources: int) -> Iterator[Hostile]:
    prefix = uuid.uuid4().hex[:6]
    tokens = {
        f"hostile-{prefix}-{i:02d}": f"hostile-token-{i:02d}-{uuid.uuid4().hex}" for i in range(sources)
    }
    with running_controller() as controller:
        config = Config(
            database_url=database_url,
            sources={
                name: SourceConfig(
                    name=name,
                    kind="generic",
                    token_hashes=(hash_token(token),),
                    policy=PolicyConfig(),
                    mapping={"preset": "generic"},
                )
                for name, token in tokens.items()
            },
            ziti=ZitiConfig(
                url=controller.url, username="admin", password=ADMIN_PASSWORD
            ),
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

    def send(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        allowed: set[int] | None = None,
    ) -> httpx.Response:
        content = raw if raw is not None else (encode(body) if body is not None else None)
        if params:
            # Encoded here: lone surrogates travel as their (invalid) UTF-8 bytes.
            path += "?" + "&".join(
                f"{quote(k.encode('utf-8', 'surrogatepass'))}={quote(v.encode('utf-8', 'surrogatepass'), safe='')}"
                for k, v in params.items()
            )
        url = str(self.client.base_url).rstrip("/") + path  # absolute: a path may start with "//"
        response = self.client.request(method, url, content=content, headers=headers)
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
        report(
            scenario,
            operations=self.requests,
            examples=examples,
            errors=errors,
            statuses="/".join(f"{s}:{c}" for s, c in sorted(self.statuses.items())),
            server_errors=sum(count for status, count in self.statuses.items() if status >= 500),
            sentinels_unchanged=self.user(self.sentinel) == self.before
            and self.user(self.other_sentinel, self.other) == self.before_other,
            **extra,
        )


def assert_past_the_end(arena: Arena, response: httpx.Response, endpoint: str) -> None:
    """A page past the end: an empty page that still counts every match of ``endpoint`` (RFC 7644
    §3.4.2.4), or a 400 invalidValue; never a page with resources in it."""
    body = response.json()
    if response.status_code == 400:
        assert body["scimType"] == "invalidValue", body
        return
    assert response.status_code == 200, body
    assert body.get("Resources", []) == [], body
    assert body["totalResults"] == arena.client.get(endpoint).json()["totalResults"] > 0, body


@contextmanager
def make_arena(hostile: Hostile) -> Iterator[Arena]:
    source, other_source = hostile.free.pop(), hostile.free.pop()
    client, other = hostile.client(source), hostile.client(other_source)
    suffix = uuid.uuid4().hex[:8]
    created = {}
    try:
        for name, scim in (("target", client), ("sentinel", client), ("other", other)):
            response = scim.post(
                "/Users", json=valid_user(f"{name}-{suffix}", f"{name}-{suffix}@example.com")
            )
            assert response.status_code == 201, response.text
            created[name] = response.json()["id"]
        group = client.post(
            "/Groups",
            json={
                "schemas": [GROUP],
                "displayName": f"group-{suffix}",
                "members": [{"value": created["target"]}],
            },
        )
        assert group.status_code == 201, group.text
        taken = [
            f"sentinel-{suffix}",
            f"sentinel-{suffix}@example.com",
            f"other-{suffix}",
            f"other-{suffix}@example.com",
        ]
        before = stable(client.get(f"/Users/{created['sentinel']}").json())
        before_other = stable(other.get(f"/Users/{created['other']}").json())
        yield Arena(
            client,
            other,
            source,
            created["target"],
            group.json()["id"],
            created["sentinel"],
            created["other"],
            before,
            before_other,
            taken,
        )
    finally:
        client.close()
        other.close()


# -- filters against the reference --------------------------------------------------------------------

POPULATION: list[tuple[str, str, dict[str, Any]]] = [
    (
        "alice",
        "Alice@Example.com",
        {"displayName": "Alice Smith", "active": True, "roles": [{"value": "vpn"}]},
    ),
    ("Stra\u00dfe", "strasse@example.com", {"displayName": "STRASSE", "name": {"familyName": "M\u00fcller"}}),
    ("STRASSE-2", "s2@example.com", {"displayName": "stra\u00dfe", "active": False}),
    (
        "\u0130stanbul",
        "ist@example.com",
        {"nickName": "i\u0307stanbul", "name": {"familyName": "\u0131\u015f\u0131k"}},
    ),
    ("\u212aelvin", "kelvin@example.com", {"displayName": "kelvin"}),
    ("cafe\u0301", "nfd@example.com", {"displayName": "caf\u00e9", "nickName": "cafe\u0301"}),
    ("\u202eevil", "rtl@example.com", {"displayName": "\u202elive\u202c"}),
    ("zero\u200bwidth", "zw@example.com", {"nickName": "\u200b"}),
    ("' OR 1=1 --", "sqli@example.com", {"displayName": '"; DROP TABLE resources; --'}),
    ("percent%", "pct@example.com", {"displayName": "100%_done\\"}),
    ("under_score", "us@example.com", {"displayName": "a_b"}),
    ('{"$ne": null}', "json@example.com", {"displayName": "null"}),
    ("emoji\U0001f600", "emoji@example.com", {"displayName": "\U0001f600\U0001f600"}),
    (
        "\u0627\u0644\u0639\u0631\u0628\u064a\u0629",
        "ar@example.com",
        {"displayName": "\u05e9\u05dc\u05d5\u05dd"},
    ),
    (
        "multi",
        "Multi@Example.COM",
        {
            "emails": [
                {"value": "Multi@Example.COM", "type": "work", "primary": True},
                {"value": "home@multi.org", "type": "home"},
                {"value": "other@MULTI.org"},
            ],
            "roles": [{"value": "Ops", "primary": True}, {"value": "vpn"}],
        },
    ),
    (
        "enterprise",
        "ent@example.com",
        {ENTERPRISE: {"department": "Ops", "employeeNumber": "007", "manager": {"value": "boss"}}},
    ),
    ("bare", "bare@example.com", {}),
    ("ZZZ", "zzz@example.com", {"displayName": "aaa", "active": True}),
]


REFUSAL_RULES = {
    "nul-in-value": "Filter values must not contain NUL",
    "attribute-not-in-published-schema": "Field not found: ",
}
"""Why ziti-scim refuses (400 invalidFilter) a filter that scim2-models' reference evaluator accepts; each
rule is documented in :mod:`app.store.filters`. A refusal matching none of them fails the test."""


SELECTING = [
    'userName eq "ALICE"',  # userName is not caseExact (RFC 7643 §4.1.1)
    'emails.value ew "@example.com"',
    'displayName co "%"',  # LIKE's wildcards are literal in a SCIM filter
    'displayName sw "a_"',
    "active eq false",
    'roles.value eq "vpn"',
    "name.familyName pr",
    'not (userName eq "alice")',
    'emails[value co "ist"] or displayName eq "kelvin"',
    'displayName eq "STRASSE"',
    'nickName eq "caf\u00e9"',  # stored decomposed (cafe + U+0301): equal once both are NFC
]
"""Filters that select someone of :data:`POPULATION`, always tried before the generated ones: the floor of
compared non-empty selections below never rests on what the generator happened to draw."""


def _known_selections(test: Any) -> Any:
    for number, text in enumerate(SELECTING):
        test = example(text=text, endpoint=["GET", "POST /.search", "POST /Users/.search"][number % 3])(test)
    return test


def check_filters(
    arena: Arena,
    population: list[tuple[str, str, dict[str, Any]]],
    examples: int,
    scenario: str,
) -> None:
    """Generated filters (grammar, edited, garbage) select exactly what ``ScimFilter.match`` selects; a valid
    filter the server refuses must fall under one of :data:`REFUSAL_RULES` (any other refusal fails), and a
    tenth of the examples at least must be compared (so that refusing is never the easy way to pass)."""
    for name, email, extra in population:
        body = {
            "schemas": [USER, ENTERPRISE],
            "userName": name,
            "emails": [{"value": email, "type": "work", "primary": True}],
            **extra,
        }
        assert arena.client.post("/Users", json=body).status_code == 201, name
    ids = {u["userName"]: u["id"] for u in list_all(arena.client, "Users")}
    for members in (["alice", "multi", "' OR 1=1 --"], ["Stra\u00dfe", "\u212aelvin"]):
        group = {
            "schemas": [GROUP],
            "displayName": "Grp " + members[0],
            "members": [{"value": ids[m]} for m in members],
        }
        assert arena.client.post("/Groups", json=group).status_code == 201
    model = cast("type[Resource[Any]] | None", load_provider().model_for("User"))
    assert model is not None
    stored = list_all(arena.client, "Users")
    users = [model.model_validate(u) for u in stored]
    pool = sorted({v for u in stored for v in _strings(u)} | set(SPECIALS))
    texts = st.one_of(scim_filter(pool), scim_filter(pool), garbled_filter(pool))
    outcome: Counter[str] = Counter()
    count = 0

    @given(text=texts, endpoint=st.sampled_from(["GET", "POST /.search", "POST /Users/.search"]))
    @bounded(examples)
    @_known_selections
    def run(text: str, endpoint: str) -> None:
        nonlocal count
        count += 1
        if endpoint == "GET":
            response = arena.send("GET", "/Users", params={"filter": text, "count": "1000"})
        else:
            response = arena.send(
                "POST",
                endpoint.split(" ")[1],
                {
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                    "filter": text,
                    "count": 1000,
                },
            )
        try:
            reference = ScimFilter[model](text)  # type: ignore[valid-type]
        except Exception:  # noqa: BLE001 - any refusal of the reference
            reference = None
        if response.status_code != 200:
            assert response.status_code == 400, response.text
            if reference is None:
                outcome["refused"] += 1
                return
            error = response.json()
            if endpoint != "GET" and _has_lone_surrogate(text):
                # Not a filter rule: a JSON body holding a lone surrogate escape is not Unicode text
                # (RFC 8259 §8.2), and scim2-server's parser refuses the whole body as invalidSyntax.
                assert error.get("scimType") == "invalidSyntax", error
                outcome["refused-body-lone-surrogate"] += 1
                return
            rules = [rule for rule, marker in REFUSAL_RULES.items() if marker in str(error.get("detail"))]
            assert rules and error.get("scimType") == "invalidFilter", (
                f"valid filter {text!r} refused for an undocumented reason: {error}"
            )
            outcome[f"refused-valid-{rules[0]}"] += 1
            if os.environ.get("RESILIENCE_DEBUG"):
                print("REFUSED", text, error.get("detail"))
            return
        # The root endpoint searches Groups too; the reference is about Users.
        found = {
            r["id"] for r in response.json()["Resources"] if r.get("meta", {}).get("resourceType") == "User"
        }
        if reference is None:
            outcome["accepted-invalid-for-reference"] += 1
            return
        expected = {str(u.id) for u in users if reference.match(u)}
        assert found == expected, (
            f"filter {text!r}: server selected {sorted(_names(found, ids))}, "
            f"scim2-models selects {sorted(_names(expected, ids))}"
        )
        outcome["compared"] += 1
        outcome["compared-nonempty"] += bool(expected)

    run()
    arena.assert_sentinels(other=True)
    assert outcome["compared-nonempty"] >= max(5, count // 20), outcome
    assert outcome["compared"] >= max(10, count // 10), outcome
    arena.summary(scenario, count, users=len(users), **{k.replace("-", "_"): v for k, v in outcome.items()})


def _has_lone_surrogate(text: str) -> bool:
    return any("\ud800" <= char <= "\udfff" for char in text)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if len(value) < 100 else []
    if isinstance(value, dict):
        return [
            s for k, v in value.items() if k not in ("meta", "id", "$ref", "location") for s in _strings(v)
        ]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def _names(found: set[str], ids: dict[str, str]) -> list[str]:
    names = {v: k for k, v in ids.items()}
    return [names.get(i, i) for i in found]
