"""Issue 12: one request does bounded work (app/scim/limits.py) and never stalls the event loop.

The caps (PATCH operations, values per multi-valued attribute) answer 400 before any work is spent, a
PATCH with many ``add`` operations applies in linear time (scim2-models alone is quadratic), and the
CPU-bound PATCH application runs off the event loop, so ``/healthz`` answers meanwhile.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from scim2_models import URN, EnterpriseUser, Extension, Group, PatchOp, ScimPolicy, User

from app.config import LimitsConfig
from app.scim.handler import member_delta, plain_member_delta
from app.scim.limits import SameValue, apply_linear, coalesce, value_counts
from app.server import create_app
from tests.paths import ROOT
from tests.support.live import live_server
from tests.support.stack import TOKEN, make_stack_config
from ziti_emulator import EmulatorThread

PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"


@pytest.fixture
def served(emulator: EmulatorThread, sqlite_url: str, source_name: str) -> Iterator[str]:
    config = make_stack_config(sqlite_url, source_name, emulator.url)
    with live_server(create_app(config)) as url:
        yield url


def _client(url: str) -> httpx.Client:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/scim+json"}
    return httpx.Client(base_url=f"{url}/scim/v2", headers=headers, timeout=60)


def _user(client: httpx.Client, name: str) -> dict[str, Any]:
    body = {"schemas": [USER_SCHEMA], "userName": name, "emails": [{"value": f"{name}@example.com"}]}
    response = client.post("/Users", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def _patch(operations: list[dict[str, Any]]) -> dict[str, Any]:
    return {"schemas": [PATCH_SCHEMA], "Operations": operations}


_POLLER = """
import json, select, sys, time
import httpx
slowest, answers = 0.0, 0
with httpx.Client(timeout=30) as client:
    client.get(sys.argv[1])  # the connection is set up before the measurement starts
    print("ready", flush=True)
    while not select.select([sys.stdin], [], [], 0.01)[0]:
        started = time.perf_counter()
        assert client.get(sys.argv[1]).status_code == 200
        slowest = max(slowest, time.perf_counter() - started)
        answers += 1
print(json.dumps({"answers": answers, "slowest": slowest}), flush=True)
"""


class HealthPoller:
    """Polls /healthz from another process, as a probe does, and records the slowest answer."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.slowest = 0.0
        self.answers = 0
        self.process: subprocess.Popen[str] | None = None

    def __enter__(self) -> HealthPoller:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _POLLER, f"{self.url}/healthz"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None and self.process.stdout.readline().strip() == "ready"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        output, _ = self.process.communicate("stop\n", timeout=60)
        result = json.loads(output.strip().splitlines()[-1])
        self.slowest, self.answers = result["slowest"], result["answers"]


HOLD = 0.2
"""How much longer than on an idle service a /healthz answer may take while a big request is served: a
request that held the event loop for longer than this shows, whatever else loads the machine."""


def idle_slowest(url: str, seconds: float = 1.0) -> float:
    """The slowest /healthz answer of an idle service over ``seconds``: this machine's noise, right now."""
    with HealthPoller(url) as poller:
        time.sleep(seconds)
    return poller.slowest


def test_ten_thousand_operations_are_refused_quickly_and_healthz_keeps_answering(served: str) -> None:
    with _client(served) as client:
        user = _user(client, "many-ops")
        operations = [{"op": "add", "path": "roles", "value": [{"value": f"role-{i}"}]} for i in range(10_000)]
        noise = idle_slowest(served)
        with HealthPoller(served) as poller:
            started = time.perf_counter()
            response = client.patch(f"/Users/{user['id']}", json=_patch(operations))
            elapsed = time.perf_counter() - started
        assert response.status_code == 400, response.text
        assert response.json()["scimType"] == "tooMany"
        assert "at most 1000 operations" in response.json()["detail"]
        assert elapsed < 2
        assert poller.answers > 0 and poller.slowest < HOLD + noise, (poller.slowest, noise)
        assert "roles" not in client.get(f"/Users/{user['id']}").json()


def test_operations_spelled_with_escapes_are_counted_too(served: str) -> None:
    with _client(served) as client:
        user = _user(client, "escaped")
        operation = '{"\\u006fp": "add", "path": "roles", "value": [{"value": "r"}]}'
        body = f'{{"schemas": ["{PATCH_SCHEMA}"], "Operations": [{", ".join([operation] * 1001)}]}}'
        response = client.patch(f"/Users/{user['id']}", content=body.encode())
        assert response.status_code == 400, response.text
        assert response.json()["scimType"] == "tooMany"
        assert "this one has 1001" in response.json()["detail"]


_FRESH_PROCESS = "ZITI_SCIM_TEST_FRESH_PROCESS"


TIMING_ATTEMPTS = 3
"""Fresh runs a /healthz timing test gets when only its timing bound failed. A request that holds the event
loop does so every time, and fails every run; a loaded machine (a CPU hog beside three test workers once
delayed one probe 0.44 s after an idle second whose slowest answer was 0.026 s) does not repeat itself."""


def _in_a_fresh_interpreter(test: str) -> None:
    """Run ``test`` of this module alone in a new interpreter and require it to pass.

    For the /healthz timing tests: threads that earlier tests of this process left running share the GIL
    and skew what they measure (both failed in full runs and passed alone). A deployment runs one service
    per process, which is what a fresh interpreter measures. Only a failure of the timing bound itself
    (``poller.slowest``) is tried again, up to :data:`TIMING_ATTEMPTS` runs in all.
    """
    missed: list[str] = []
    for _ in range(TIMING_ATTEMPTS):
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"{__file__}::{test}"],
            env={**os.environ, _FRESH_PROCESS: "1"},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode == 0:
            assert "1 passed" in done.stdout, done.stdout[-2000:]
            if missed:
                print(f"{test}: timing bound missed in {len(missed)} earlier run(s): {missed}")
            return
        timing = [line for line in done.stdout.splitlines() if line.startswith("E") and ".slowest" in line]
        assert timing, done.stdout[-6000:] + done.stderr[-2000:]
        missed.append(timing[0].strip())
    raise AssertionError(f"{test}: timing bound missed in all {TIMING_ATTEMPTS} runs: {missed}")


def test_a_patch_at_the_caps_is_applied_while_healthz_keeps_answering(
    served: str, emulator: EmulatorThread
) -> None:
    """1,000 operations (the cap) adding 500 roles (the cap), then 499 removals by filter, in linear time."""
    if not os.environ.get(_FRESH_PROCESS):
        _in_a_fresh_interpreter(test_a_patch_at_the_caps_is_applied_while_healthz_keeps_answering.__name__)
        return
    with _client(served) as client:
        user = _user(client, "at-cap")
        adds = [{"op": "add", "path": "roles", "value": [{"value": f"role-{i % 500}"}]} for i in range(1000)]
        removals = [{"op": "remove", "path": f'roles[value eq "role-{i % 500}"]'} for i in range(1000)]
        noise = idle_slowest(served)
        with HealthPoller(served) as poller:
            added = client.patch(f"/Users/{user['id']}", json=_patch(adds))
            removed = client.patch(f"/Users/{user['id']}", json=_patch(removals[:499]))
        assert added.status_code == 200, added.text
        assert sorted(role["value"] for role in added.json()["roles"]) == sorted(f"role-{i}" for i in range(500))
        assert removed.status_code == 200, removed.text
        assert [role["value"] for role in removed.json()["roles"]] == ["role-499"]
        assert poller.answers > 0 and poller.slowest < HOLD + noise, (poller.slowest, noise)
    deadline = time.monotonic() + 20  # converged after the answers
    while emulator.state.identity_by_external_id("at-cap@example.com") is None:
        assert time.monotonic() < deadline, "the user was never converged"
        time.sleep(0.05)


def test_twenty_thousand_roles_in_a_post_are_refused_and_nothing_reaches_the_controller(
    served: str, emulator: EmulatorThread
) -> None:
    with _client(served) as client:
        body = {
            "schemas": [USER_SCHEMA],
            "userName": "hoarder",
            "emails": [{"value": "hoarder@example.com"}],
            "roles": [{"value": f"role-{i}"} for i in range(20_000)],
        }
        response = client.post("/Users", json=body)
        assert response.status_code == 400, response.text
        assert response.json()["scimType"] == "invalidValue"
        assert "'roles' may hold at most 500 values, not 20000" in response.json()["detail"]
        assert client.get("/Users", params={"filter": 'userName eq "hoarder"'}).json()["totalResults"] == 0
    assert emulator.state.identity_by_external_id("hoarder@example.com") is None


def test_a_patch_growing_an_attribute_beyond_the_cap_is_refused_and_changes_nothing(served: str) -> None:
    with _client(served) as client:
        user = _user(client, "grower")
        first = [{"op": "add", "path": "roles", "value": [{"value": f"r-{i}"} for i in range(400)]}]
        assert client.patch(f"/Users/{user['id']}", json=_patch(first)).status_code == 200
        more = [{"op": "add", "path": "roles", "value": [{"value": f"s-{i}"}]} for i in range(101)]
        response = client.patch(f"/Users/{user['id']}", json=_patch(more))
        assert response.status_code == 400, response.text
        assert response.json()["scimType"] == "invalidValue"
        assert len(client.get(f"/Users/{user['id']}").json()["roles"]) == 400
        put = {**user, "roles": [{"value": f"p-{i}"} for i in range(501)]}
        assert client.put(f"/Users/{user['id']}", json=put).status_code == 400


def test_members_are_exempt_from_the_value_cap(emulator: EmulatorThread, sqlite_url: str, source_name: str) -> None:
    """The value cap does not apply to members: IdPs add thousands at once (the delta path)."""
    config = make_stack_config(sqlite_url, source_name, emulator.url)
    config = replace(config, limits=LimitsConfig(max_attribute_values=2))
    with live_server(create_app(config)) as url, _client(url) as client:
        members = [{"value": _user(client, f"member-{i}")["id"]} for i in range(4)]
        group = client.post(
            "/Groups",
            json={"schemas": [GROUP_SCHEMA], "displayName": "big", "members": members[:3]},
        )
        assert group.status_code == 201, group.text
        response = client.patch(
            f"/Groups/{group.json()['id']}", json=_patch([{"op": "add", "path": "members", "value": members}])
        )
        assert response.status_code in (200, 204), response.text
        stored = client.get(f"/Groups/{group.json()['id']}").json()
        assert sorted(member["value"] for member in stored["members"]) == sorted(m["value"] for m in members)


def test_limits_come_from_the_config(emulator: EmulatorThread, sqlite_url: str, source_name: str) -> None:
    config = make_stack_config(sqlite_url, source_name, emulator.url)
    config = replace(config, limits=LimitsConfig(max_patch_operations=3, max_attribute_values=2))
    with live_server(create_app(config)) as url, _client(url) as client:
        user = _user(client, "tight")
        four = [{"op": "replace", "path": "displayName", "value": f"d{i}"} for i in range(4)]
        assert client.patch(f"/Users/{user['id']}", json=_patch(four)).json()["scimType"] == "tooMany"
        three = [{"op": "add", "path": "roles", "value": [{"value": f"r{i}"}]} for i in range(3)]
        assert client.patch(f"/Users/{user['id']}", json=_patch(three)).json()["scimType"] == "invalidValue"
        assert client.patch(f"/Users/{user['id']}", json=_patch(three[:2])).status_code == 200


ADDS: list[tuple[list[dict[str, Any]], dict[str, Any]]] = [
    (
        [
            {"op": "add", "path": "roles", "value": [{"value": "x"}]},
            {"op": "add", "path": "roles", "value": [{"value": "X"}, {"value": "y"}, {"value": "y"}]},
            {"op": "add", "path": "emails", "value": {"value": "a@example.org"}},
            {"op": "add", "path": "emails", "value": {"value": "a@example.org", "type": "work"}},
            {"op": "add", "path": "emails", "value": {"value": "c@example.org", "primary": True}},
            {"op": "add", "path": "emails", "value": {"value": "d@example.org", "primary": True}},
        ],
        {"userName": "u"},
    ),
    (
        [
            {"op": "add", "path": "roles", "value": [{"value": "x"}]},
            {"op": "replace", "path": "displayName", "value": "d"},
            {"op": "add", "path": "Roles", "value": {"value": "x"}},
            {"op": "add", "path": "roles", "value": [{"value": "z", "display": "Z"}]},
        ],
        {"userName": "u", "roles": [{"value": "z"}]},
    ),
]


@pytest.mark.parametrize(("operations", "start"), ADDS)
def test_coalesced_adds_give_what_the_operations_give_one_by_one(
    operations: list[dict[str, Any]], start: dict[str, Any]
) -> None:
    patch = PatchOp[User].model_validate(_patch(operations))
    one_by_one, merged = User.model_validate(start), User.model_validate(start)
    coalesced = coalesce(patch, User)
    assert len(coalesced.operations or []) < len(operations)
    assert patch.patch(one_by_one) == coalesced.patch(merged)
    assert merged.model_dump() == one_by_one.model_dump()


START = {
    "userName": "u",
    "roles": [{"value": "a", "display": "A", "primary": True}, {"value": "B", "type": "t"}, {"value": "c"}],
    "emails": [{"value": "x@example.org", "type": "work", "primary": True}, {"value": "y@example.org"}],
}


def _removal(attribute: str, value: str) -> dict[str, Any]:
    return {"op": "remove", "path": f'{attribute}[value eq "{value}"]'}


REMOVALS: list[list[dict[str, Any]]] = [
    [_removal("roles", "A"), _removal("roles", "b")],  # caseExact false, as the filter compares
    [_removal("roles", "zz"), _removal("roles", "q")],  # nothing matches: no change
    [_removal("roles", "a"), _removal("roles", "b"), _removal("roles", "C")],  # all: the attribute goes
    [
        {"op": "add", "path": "roles", "value": [{"value": "d"}]},
        _removal("roles", "d"),
        _removal("roles", "a"),
        {"op": "replace", "path": "displayName", "value": "z"},
        _removal("emails", "X@example.org"),
        _removal("emails", "y@example.org"),
    ],
]


@pytest.mark.parametrize("operations", REMOVALS)
def test_removal_runs_give_what_the_operations_give_one_by_one(operations: list[dict[str, Any]]) -> None:
    patch = PatchOp[User].model_validate(_patch(operations))
    one_by_one, linear = User.model_validate(START), User.model_validate(START)
    assert patch.patch(one_by_one) == apply_linear(patch, linear)
    assert linear.model_dump() == one_by_one.model_dump()


def test_a_removal_run_is_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """1,000 removals by filter on 500 roles: one pass, not 1,000 scans (each with a snapshot)."""
    patch = PatchOp[User].model_validate(_patch([_removal("roles", f"r{i}") for i in range(1000)]))
    user = User(user_name="u", roles=[{"value": f"r{i}"} for i in range(500)])  # type: ignore[list-item]
    calls = 0
    original = PatchOp.patch

    def counted(self: PatchOp[Any], resource: Any, scim_policy: Any = None) -> bool:
        nonlocal calls
        calls += len(self.operations or [])
        return original(self, resource, scim_policy)

    monkeypatch.setattr(PatchOp, "patch", counted)
    assert apply_linear(patch, user)
    assert user.roles is None and calls == 1


def test_coalesced_patch_is_linear() -> None:
    """2,000 single-role adds become one operation (the library alone compares each with all before it)."""
    operations = [{"op": "add", "path": "roles", "value": [{"value": f"r{i}"}]} for i in range(2000)]
    coalesced = coalesce(PatchOp[User].model_validate(_patch(operations)), User)
    assert len(coalesced.operations or []) == 1
    user = User(user_name="u")
    coalesced.patch(user)
    assert [role.value for role in user.roles or []] == [f"r{i}" for i in range(2000)]




def test_a_big_group_is_read_and_patched_while_healthz_keeps_answering(tmp_path: Any) -> None:
    """Building a 5,000-member group (validation, publication, JSON) takes a second of CPU, off the loop.

    On the loop, a probe sent meanwhile waits for all of it; off the loop, only for the longest single step
    (one pydantic validation). Compared with the request's own time and with an idle probe's, so machine
    load cancels out.
    """
    if not os.environ.get(_FRESH_PROCESS):
        _in_a_fresh_interpreter(test_a_big_group_is_read_and_patched_while_healthz_keeps_answering.__name__)
        return
    from app.config import Config, SourceConfig, hash_token
    from bench.common import SOURCE
    from bench.common import TOKEN as BENCH_TOKEN
    from bench.seed import seed

    database = str(tmp_path / "big.db")
    seeded = seed(database, "big", 0, 5_001, groups={"big": 5_000})
    source = SourceConfig(name=SOURCE, token_hashes=(hash_token(BENCH_TOKEN),))
    with live_server(create_app(Config(database_url=database, sources={SOURCE: source}))) as url:
        headers = {"Authorization": f"Bearer {BENCH_TOKEN}", "Content-Type": "application/scim+json"}
        with httpx.Client(base_url=f"{url}/scim/v2", headers=headers, timeout=120) as client:
            group = seeded.group_ids["big"]
            add = _patch([{"op": "add", "path": "members", "value": [{"value": seeded.user_ids[-1]}]}])
            noise = idle_slowest(url)
            with HealthPoller(url) as poller:
                started = time.perf_counter()
                read = client.get(f"/Groups/{group}")
                patched = client.patch(f"/Groups/{group}", json=add)
                elapsed = time.perf_counter() - started
        assert read.status_code == 200 and len(read.json()["members"]) == 5_000
        assert patched.status_code == 200 and len(patched.json()["members"]) == 5_001
        print(f"big group: GET + PATCH {elapsed:.2f} s, slowest /healthz {poller.slowest:.3f} s (idle {noise:.3f} s)")
        # On the loop, a probe would wait for a whole GET or PATCH (about half of ``elapsed``).
        assert poller.answers > 0 and poller.slowest < elapsed / 4 + noise


def test_same_value_compares_as_a_scim2_models_filter_does() -> None:
    """Strings by the attribute's caseExact (RFC 7643 §2.2) after NFC; entries sub-attribute by sub-attribute."""
    emails, photos = SameValue(User, "emails"), SameValue(User, "photos")
    assert emails.string_key("value", "A@Example.ORG") == emails.string_key("value", "a@example.org")
    assert emails.string_key("value", "cafe\u0301@x") == emails.string_key("value", "caf\u00e9@x")
    assert photos.string_key("value", "https://x/A") != photos.string_key("value", "https://x/a")  # caseExact
    work = emails.entry({"value": "A@x.org", "type": "Work"})
    assert type(work).__name__ == "Email"
    assert emails.key(work) == emails.key(emails.entry({"value": "a@x.org", "type": "work"}))
    assert emails.key(work) != emails.key(emails.entry({"value": "a@x.org", "type": "work", "display": "d"}))
    assert emails.key(work) != emails.key(emails.entry({"value": "a@x.org"}))


def test_authentiks_member_push_is_not_held_to_the_operation_cap(
    emulator: EmulatorThread, sqlite_url: str, source_name: str
) -> None:
    """authentik adds every member of a group in one PATCH, one ``add`` per member (``bulk.maxOperations``
    is 0): that shape takes the linear delta path and is bounded by the body size, not by
    ``max_patch_operations``; any other shape keeps the cap, and an unknown member refuses the whole PATCH."""
    config = make_stack_config(sqlite_url, source_name, emulator.url)
    config = replace(config, limits=LimitsConfig(max_patch_operations=3))
    with live_server(create_app(config)) as url, _client(url) as client:
        ids = [_user(client, f"pushed-{i}")["id"] for i in range(6)]
        group = client.post("/Groups", json={"schemas": [GROUP_SCHEMA], "displayName": "pushed"}).json()
        # authentik's body (trace 07): one add per member, Operations before schemas.
        push: dict[str, Any] = {
            "Operations": [{"op": "add", "path": "members", "value": [{"value": i}]} for i in ids[:5]],
            "schemas": [PATCH_SCHEMA],
        }
        response = client.patch(f"/Groups/{group['id']}", json=push)
        assert response.status_code == 200, response.text
        assert sorted(m["value"] for m in response.json()["members"]) == sorted(ids[:5])
        with_refs = [
            {"op": "add", "path": "members", "value": [{"value": i, "$ref": f"Users/{i}"}]} for i in ids[:4]
        ]
        refused = client.patch(f"/Groups/{group['id']}", json=_patch(with_refs))
        assert refused.status_code == 400 and refused.json()["scimType"] == "tooMany", refused.text
        unknown = [{"op": "remove", "path": "members", "value": [{"value": i}]} for i in ids[:4]]
        unknown.append({"op": "add", "path": "members", "value": [{"value": ids[5]}, {"value": "nobody"}]})
        refused = client.patch(f"/Groups/{group['id']}", json=_patch(unknown))
        assert refused.status_code == 400 and refused.json()["scimType"] == "invalidValue", refused.text
        stored = client.get(f"/Groups/{group['id']}").json()
        assert sorted(m["value"] for m in stored["members"]) == sorted(ids[:5])


PLAIN = [
    [{"op": "add", "path": "members", "value": [{"value": "a"}, {"value": "b", "display": "B"}]}],
    [{"op": "Add", "path": "members", "value": [{"value": "a", "type": "user"}]}],
    [
        {"op": "add", "path": "urn:ietf:params:scim:schemas:core:2.0:Group:members", "value": [{"value": "a"}]},
        {"op": "remove", "path": "members", "value": [{"value": "b"}]},
    ],
    [
        {"op": "add", "path": "members", "value": [{"value": "a"}, {"value": "b"}]},
        {"op": "remove", "path": "members", "value": [{"value": "a"}]},
        {"op": "add", "path": "members", "value": [{"value": "b"}]},
        {"op": "remove", "path": "members", "value": [{"value": "b"}, {"value": "c"}]},
    ],
]
NOT_PLAIN = [
    [{"op": "replace", "path": "members", "value": [{"value": "a"}]}],
    [{"op": "remove", "path": 'members[value eq "a"]'}],
    [{"op": "add", "path": "members", "value": [{"value": "a", "$ref": "Users/a"}]}],
    [{"op": "add", "path": "members", "value": [{"value": ""}]}],
    [{"op": "add", "path": "members", "value": [{"value": "a\x00"}]}],
    [{"op": "add", "path": "members", "value": {"value": "a"}}],
    [{"op": "add", "path": "displayName", "value": "x"}],
    [{"op": "add", "path": "members", "value": [{"value": "a"}], "extra": 1}],
]


@pytest.mark.parametrize("operations", PLAIN)
def test_a_plain_member_patch_reads_as_the_validated_path_reads_it(operations: list[dict[str, Any]]) -> None:
    policy = ScimPolicy(remove_value_as_filter=ScimPolicy.RemoveValue.apply)  # ziti-scim's default
    plain = plain_member_delta(_patch(operations), policy)
    validated = member_delta(PatchOp[Group].model_validate(_patch(operations)), policy)
    assert plain is not None and validated is not None
    assert [m["value"] for m in plain.add] == [m["value"] for m in validated.add]
    assert [m.get("display") for m in plain.add] == [m.get("display") for m in validated.add]
    assert (plain.remove, plain.replace_all, plain.other) == (validated.remove, False, [])
    assert plain.withdrawn == validated.withdrawn


@pytest.mark.parametrize("operations", NOT_PLAIN)
def test_other_member_patches_take_the_validated_path(operations: list[dict[str, Any]]) -> None:
    lenient = ScimPolicy(remove_value_as_filter=ScimPolicy.RemoveValue.apply)
    assert plain_member_delta(_patch(operations), lenient) is None
    assert plain_member_delta({"Operations": PLAIN[0]}, lenient) is None  # no schemas: validated
    strict = ScimPolicy(remove_value_as_filter=ScimPolicy.RemoveValue.forbid)
    assert plain_member_delta(_patch(PLAIN[2]), strict) is None


class Badges(Extension):
    __schema__ = URN("urn:example:params:scim:schemas:extension:badges:2.0:User")
    badges: list[str] | None = None


def test_value_counts_counts_the_values_of_the_resource_and_of_its_extensions() -> None:
    user = User[Badges | EnterpriseUser].model_validate(
        {
            "userName": "ada",
            "emails": [{"value": "a@example.org"}, {"value": "b@example.org"}],
            "urn:example:params:scim:schemas:extension:badges:2.0:User": {"badges": ["x", "y", "z"]},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "d"},
        }
    )
    assert value_counts(user) == {
        "emails": 2,
        "urn:example:params:scim:schemas:extension:badges:2.0:User:badges": 3,
    }
