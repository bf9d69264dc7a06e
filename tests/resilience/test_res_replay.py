"""Issue 6, resilience 3: duplicate and reordered SCIM deliveries (IdP replays and retries) end in the
same state as the clean sequence: the same users, groups and identities.

The clean sequence runs on one stack, the disturbed one on another (own database and controller):
every write is sent twice (a create's second copy gets 409 and the IdP finds the user by filter; a
second DELETE gets 404), and the blocks of membership PATCHes, which commute, are shuffled.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from app.server import create_app
from tests.resilience.res_support import (
    GROUP,
    HEADERS,
    PATCH,
    STATUS,
    USER,
    Controller,
    list_all,
    report,
    running_controller,
    stack_config,
)
from tests.seeds import test_seed
from tests.support.live import live_server


def user(key: str, roles: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "schemas": [USER],
        "userName": key,
        "displayName": f"User {key}",
        "emails": [{"value": f"{key}@example.com", "primary": True, "type": "work"}],
        "roles": [{"value": role} for role in roles],
        **extra,
    }


def patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH], "Operations": list(operations)}


Step = tuple[Any, ...]


def sequence() -> list[Step | list[Step]]:
    """The clean sequence; a nested list is a block of membership PATCHes that commute."""
    users: list[Step | list[Step]] = [
        ("create", key, user(key, roles))
        for key, roles in zip("abcdefghijkl", [["vpn"], ["ops"], [], ["dev", "vpn"]] * 3, strict=True)
    ]
    return [
        *users,
        ("group", "g1", ["a", "b", "c"]),
        ("group", "g2", ["d", "e"]),
        ("group", "g3", []),
        [
            ("members", "g1", ["d", "e"], []),
            ("members", "g2", ["a"], []),
            ("members", "g3", ["f", "g", "h"], []),
            ("members", "g1", [], ["c"]),
            ("members", "g2", [], ["e"]),
            ("members", "g3", ["i"], []),
            ("members", "g2", ["k"], []),
        ],
        ("patch", "b", patch({"op": "replace", "path": "active", "value": False})),
        ("patch", "a", patch({"op": "add", "path": "roles", "value": [{"value": "ops"}]})),
        ("patch", "c", patch({"op": "replace", "path": "displayName", "value": "Cee"})),
        ("patch", "d", patch({"op": "remove", "path": 'roles[value eq "dev"]'})),
        ("patch", "g", patch({"op": "add", "value": {"displayName": "Gee", "active": False}})),
        ("put", "e", user("e", ["db"], displayName="Eee")),
        ("delete", "f"),
        ("delete", "j"),
        [
            ("members", "g3", [], ["g"]),
            ("members", "g1", ["k", "l"], []),
            ("members", "g2", [], ["a"]),
        ],
    ]


# The end state the sequence describes, worked out by hand from it (not by running it), so that a bug
# shared by the clean and the replayed run cannot hide: f and j deleted; b and g deactivated.
EXPECTED_GROUPS = {
    "g1": ["a", "b", "d", "e", "k", "l"],
    "g2": ["d", "k"],
    "g3": ["h", "i"],
}
EXPECTED_ROLES = {
    "a": ["ops", "vpn"], "b": ["ops"], "c": [], "d": ["vpn"], "e": ["db"],
    "g": [], "h": ["dev", "vpn"], "i": ["vpn"], "k": [], "l": ["dev", "vpn"],
}  # fmt: skip
EXPECTED_DISPLAY_NAMES = {key: f"User {key}" for key in EXPECTED_ROLES} | {"c": "Cee", "e": "Eee", "g": "Gee"}
DEACTIVATED = {"b", "g"}


def expected_identities() -> dict[str, tuple[str, list[str], bool]]:
    """name -> (externalId, roleAttributes = roles + direct groups, disabled)."""
    return {
        key: (
            f"{key}@example.com",
            sorted(set(roles) | {group for group, members in EXPECTED_GROUPS.items() if key in members}),
            key in DEACTIVATED,
        )
        for key, roles in EXPECTED_ROLES.items()
    }


@dataclass
class Runner:
    client: httpx.Client
    replay: bool
    rng: random.Random
    ids: dict[str, str] = field(default_factory=dict)
    requests: int = 0
    observations: dict[str, int] = field(default_factory=dict)

    def send(self, method: str, path: str, body: Any = None) -> httpx.Response:
        self.requests += 1
        response = self.client.request(method, path, json=body)
        assert response.status_code < 500, f"{method} {path}: {response.status_code} {response.text[:300]}"
        return response

    def note(self, what: str) -> None:
        self.observations[what] = self.observations.get(what, 0) + 1

    def step(self, step: Step) -> None:
        kind = step[0]
        copies = 2 if self.replay else 1
        if kind == "create":
            _, key, body = step
            first = self.send("POST", "/Users", body)
            assert first.status_code == 201, first.text
            self.ids[key] = first.json()["id"]
            if self.replay:
                # The IdP did not see the 201 and retries: 409, then it looks the user up by filter.
                second = self.send("POST", "/Users", body)
                assert second.status_code == 409 and second.json().get("scimType") == "uniqueness", (
                    second.text
                )
                found = self.client.get("/Users", params={"filter": f'userName eq "{key}"'})
                self.requests += 1
                assert [r["id"] for r in found.json()["Resources"]] == [self.ids[key]]
                self.note("create-409-then-filter")
        elif kind == "group":
            _, name, members = step
            body = {
                "schemas": [GROUP],
                "displayName": name,
                "members": [{"value": self.ids[k]} for k in members],
            }
            response = self.send("POST", "/Groups", body)
            assert response.status_code == 201, response.text
            self.ids[name] = response.json()["id"]
        elif kind == "members":
            _, name, add, remove = step
            operations = []
            if add:
                operations.append(
                    {"op": "add", "path": "members", "value": [{"value": self.ids[k]} for k in add]}
                )
            operations += [{"op": "remove", "path": f'members[value eq "{self.ids[k]}"]'} for k in remove]
            for _ in range(copies):
                response = self.send("PATCH", f"/Groups/{self.ids[name]}", patch(*operations))
                assert response.status_code in (200, 204), response.text
        elif kind == "patch":
            _, key, body = step
            for _ in range(copies):
                response = self.send("PATCH", f"/Users/{self.ids[key]}", body)
                assert response.status_code == 200, response.text
        elif kind == "put":
            _, key, body = step
            for _ in range(copies):
                response = self.send("PUT", f"/Users/{self.ids[key]}", body)
                assert response.status_code == 200, response.text
        elif kind == "delete":
            _, key = step
            assert self.send("DELETE", f"/Users/{self.ids[key]}").status_code == 204
            if self.replay:
                assert self.send("DELETE", f"/Users/{self.ids[key]}").status_code == 404
                self.note("delete-twice-404")

    def run(self, steps: list[Step | list[Step]]) -> None:
        for item in steps:
            if isinstance(item, list):
                block = list(item)
                if self.replay:
                    self.rng.shuffle(block)
                    self.note("membership-block-shuffled")
                for step in block:
                    self.step(step)
            else:
                self.step(item)


def end_state(client: httpx.Client, controller: Controller) -> dict[str, Any]:
    """Everything that must not depend on the delivery order, without server-assigned ids."""
    users = list_all(client, "Users")
    names = {u["id"]: u["userName"] for u in users}
    state_users = {
        u["userName"]: {
            "displayName": u.get("displayName"),
            "active": u.get("active"),
            "emails": sorted(e["value"] for e in u.get("emails", [])),
            "roles": sorted(r["value"] for r in u.get("roles", [])),
            "groups": sorted(g.get("display", "") for g in u.get("groups", [])),
            "provisioningState": u.get(STATUS, {}).get("provisioningState"),
        }
        for u in users
    }
    groups = {
        g["displayName"]: sorted(names.get(m["value"], "?") for m in g.get("members", []))
        for g in list_all(client, "Groups")
    }
    with controller.state.lock:
        identities = {
            i.name: (i.external_id, sorted(i.role_attributes), i.disabled_at is not None)
            for i in controller.state.identities.values()
            if i.tags.get("managedBy") == "ziti-scim"
        }
    return {"users": state_users, "groups": groups, "identities": identities}


@contextmanager
def stack(path: Path, source: str) -> Iterator[tuple[httpx.Client, Controller]]:
    with running_controller() as controller:
        app = create_app(stack_config(str(path), source, controller.url))
        with (
            live_server(app) as url,
            httpx.Client(base_url=f"{url}/scim/v2", headers=HEADERS, timeout=30) as client,
        ):
            yield client, controller


def converged(client: httpx.Client, controller: Controller) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + 30
    while True:
        state = end_state(client, controller)
        if all(u["provisioningState"] == "synced" for u in state["users"].values()) and len(
            state["identities"]
        ) == len(state["users"]):
            return state
        assert time.monotonic() < deadline, state
        time.sleep(0.1)


def test_replayed_and_reordered_scim_deliveries_end_in_the_same_state(
    tmp_path: Path, source_name: str
) -> None:
    seed = test_seed("replayed-deliveries")
    with stack(tmp_path / "clean.db", source_name) as (client, controller):
        clean_runner = Runner(client, replay=False, rng=random.Random(seed))
        clean_runner.run(sequence())
        clean = converged(client, controller)
    with stack(tmp_path / "replayed.db", source_name) as (client, controller):
        runner = Runner(client, replay=True, rng=random.Random(seed))
        runner.run(sequence())
        replayed = converged(client, controller)
        duplicates = controller.recorder.duplicate_creates()
    # The clean run ends in the state the sequence describes ...
    assert clean["groups"] == EXPECTED_GROUPS
    assert clean["identities"] == expected_identities()
    assert {key: u["roles"] for key, u in clean["users"].items()} == EXPECTED_ROLES
    assert {key: u["displayName"] for key, u in clean["users"].items()} == EXPECTED_DISPLAY_NAMES
    assert {key for key, u in clean["users"].items() if u["active"] is False} == DEACTIVATED
    # ... and the replayed, reordered run ends in the very same one.
    assert replayed["groups"] == clean["groups"]
    assert replayed["identities"] == clean["identities"]
    assert replayed["users"] == clean["users"]
    assert duplicates == {}
    report(
        "scim-replay-reorder",
        operations=clean_runner.requests + runner.requests,
        clean_requests=clean_runner.requests,
        disturbed_requests=runner.requests,
        **runner.observations,
        users=len(replayed["users"]),
        identities_verified=len(replayed["identities"]),
        duplicates=len(duplicates),
        same_end_state=replayed == clean,
        seed=seed,
    )
