"""The resilience suite's tools: a recording controller emulator, a SCIM sync driver that keeps the
expected end state, and the end-state verifier (convergence, duplicates, leftovers).

Every scenario ends with :func:`report`, one summary line (printed, and collected for the terminal
summary by ``conftest.py``) saying how many operations ran and what was verified.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from app.config import Config, SafetyConfig
from app.constants import STATUS_EXTENSION as STATUS
from app.ziti.client import ZitiClient
from app.ziti.retry import RetryPolicy
from app.ziti.session import PasswordCredentials
from tests.support.emulator import ADMIN_PASSWORD, emulator_app, running_emulator
from tests.support.stack import TOKEN, make_stack_config
from ziti_emulator import EmulatorState, EmulatorThread

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
IDENTITIES = "/edge/management/v1/identities"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/scim+json"}

SUMMARIES: list[str] = []
"""Every scenario's summary line, shown again at the end of the run by ``conftest.py``."""


def report(scenario: str, **counts: Any) -> str:
    line = f"scenario={scenario} " + " ".join(f"{key}={value}" for key, value in counts.items())
    print(line)
    SUMMARIES.append(line)
    return line


# -- the controller emulator, recording every successful identity create -----------------------------


class CreateRecorder:
    """ASGI wrapper of the emulator that remembers each 201 to ``POST /identities`` (externalId, id).

    The emulator's own request log keeps no bodies; this is what proves no identity was created twice.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.state = app.state  # EmulatorThread reads ``app.state.emulator``
        self.lock = threading.Lock()
        self.creates: list[tuple[str | None, str]] = []
        self.response_delay = 0.0
        """Seconds to hold every answer *after* the request was applied: a controller that does the work
        but answers past the client's timeout (the emulator's own ``latency`` delays before applying)."""
        self.delay_paths = ""
        """Only delay requests whose path contains this (``/identities``: the session stays usable)."""
        self.delay_methods: frozenset[str] | None = None
        """Only delay these methods (None: all)."""
        self.before_answer: Callable[[str, str, str], None] | None = None
        """Called with (method, path, query) after the emulator handled a request, before it answers."""

    def _send_late(self, scope: Any, send: Any) -> Any:
        async def late(message: Any) -> None:
            if message["type"] == "http.response.start" and self.before_answer is not None:
                self.before_answer(scope["method"], scope["path"], scope.get("query_string", b"").decode())
            if (
                message["type"] == "http.response.start"
                and self.response_delay > 0
                and self.delay_paths in scope["path"]
                and (self.delay_methods is None or scope["method"] in self.delay_methods)
            ):
                await asyncio.sleep(self.response_delay)
            await send(message)

        return late

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            send = self._send_late(scope, send)
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].endswith(IDENTITIES):
            await self.app(scope, receive, send)
            return
        body = bytearray()
        answer: dict[str, Any] = {"status": 0, "body": bytearray()}

        async def recv() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                body.extend(message.get("body", b""))
            return message

        async def snd(message: Any) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            elif message["type"] == "http.response.body":
                answer["body"].extend(message.get("body", b""))
            await send(message)

        await self.app(scope, recv, snd)
        if answer["status"] == 201:
            try:
                external_id = json.loads(bytes(body)).get("externalId")
                identity_id = json.loads(bytes(answer["body"]))["data"]["id"]
            except (ValueError, KeyError, TypeError):
                external_id, identity_id = "<unreadable>", "<unreadable>"
            with self.lock:
                self.creates.append((external_id, identity_id))

    def duplicate_creates(self) -> dict[str, int]:
        with self.lock:
            counts = Counter(external_id for external_id, _ in self.creates if external_id)
        return {key: count for key, count in counts.items() if count > 1}

    def created(self) -> int:
        with self.lock:
            return len(self.creates)


@dataclass
class Controller:
    thread: EmulatorThread
    recorder: CreateRecorder

    @property
    def state(self) -> EmulatorState:
        return self.thread.state

    @property
    def url(self) -> str:
        return self.thread.url


@contextmanager
def running_controller() -> Iterator[Controller]:
    recorder = CreateRecorder(emulator_app())
    with running_emulator(recorder) as thread:
        yield Controller(thread, recorder)


def fast_ziti_client(
    url: str, *, timeout: float = 1.0, attempts: int = 3, deadline: float = 2.0
) -> ZitiClient:
    """A controller client with a short per-attempt timeout and retry budget, so faults surface quickly."""
    return ZitiClient(
        url,
        PasswordCredentials("admin", ADMIN_PASSWORD),
        timeout=timeout,
        retry=RetryPolicy(
            max_attempts=attempts,
            base_delay=0.05,
            max_delay=0.3,
            total_deadline=deadline,
            max_retry_after=1.0,
        ),
    )


def stack_config(database_url: str, source: str, ziti_url: str) -> Config:
    """The stack's configuration with the brake out of the way.

    New users are created as soon as they are marked (``create_settle = 0``): the faults injected while
    the IdP writes must meet the creates, not only the changes that follow them.
    """
    config = make_stack_config(database_url, source, ziti_url, create_settle=0.0)
    return replace(config, safety=SafetyConfig(brake_max=100_000, brake_min=100_000))


# -- the SCIM side: a sync driver that knows the end state it must produce ------------------------------


@dataclass
class UserSpec:
    key: str
    user_name: str
    email: str
    display_name: str
    roles: list[str] = field(default_factory=list)
    active: bool = True

    @property
    def external_id(self) -> str:
        return self.email.lower()

    def resource(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "schemas": [USER],
            "userName": self.user_name,
            "displayName": self.display_name,
            "emails": [{"value": self.email, "primary": True, "type": "work"}],
            "active": self.active,
        }
        if self.roles:
            body["roles"] = [{"value": role} for role in self.roles]
        return body


@dataclass
class Expected:
    """The end state the acknowledged SCIM writes describe."""

    users: dict[str, UserSpec] = field(default_factory=dict)
    deleted: dict[str, UserSpec] = field(default_factory=dict)
    groups: dict[str, set[str]] = field(default_factory=dict)
    user_ids: dict[str, str] = field(default_factory=dict)
    group_ids: dict[str, str] = field(default_factory=dict)

    def role_attributes(self, key: str) -> list[str]:
        user = self.users[key]
        names = {name for name, members in self.groups.items() if key in members}
        return sorted(names | set(user.roles))


class ScimError(AssertionError):
    pass


class Sync:
    """Sends SCIM writes like an IdP and updates :class:`Expected` only on what was acknowledged.

    ``resilient``: retry transport errors and 503 until the service answers (what an IdP does when the
    service restarts), resolving the ambiguity of a retried write the way IdPs do (409 on a create →
    look the resource up by filter; 404 on a retried DELETE → already gone).
    """

    def __init__(
        self,
        base_url: str,
        *,
        domain: str = "Example.COM",
        resilient: bool = False,
        give_up_after: float = 60.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.base_url = base_url
        self.client = httpx.Client(base_url=base_url, headers=headers or HEADERS, timeout=30)
        self.domain = domain
        self.resilient = resilient
        self.give_up_after = give_up_after
        self.expected = Expected()
        self.operations = 0
        self.retries = 0
        self.statuses: Counter[int] = Counter()
        self.lock = threading.Lock()

    def close(self) -> None:
        self.client.close()

    def settle(self, timeout: float = 20.0) -> None:
        """Wait until no user shows ``pending`` (convergence runs after each SCIM answer)."""
        deadline = time.monotonic() + timeout
        while True:
            users = self.client.get("/Users", params={"count": 1000}).json().get("Resources", [])
            pending = [u["userName"] for u in users if u.get(STATUS, {}).get("provisioningState") == "pending"]
            if not pending:
                return
            assert time.monotonic() < deadline, f"still pending after {timeout} s: {pending}"
            time.sleep(0.02)

    def _count(self) -> None:
        with self.lock:
            self.operations += 1

    # -- transport ---------------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        lookup: Callable[[], str | None] | None = None,
    ) -> httpx.Response:
        """One SCIM request; in resilient mode repeated until the service gives a definite answer.

        ``lookup`` (creates): before repeating a create whose outcome is unknown, look for what it would
        have created, as careful IdPs do; a found id ends the retry (``response.found_id``).
        """
        deadline = time.monotonic() + self.give_up_after
        attempt = 0
        while True:
            attempt += 1
            if attempt > 1 and lookup is not None:
                try:
                    found = lookup()
                except httpx.TransportError:
                    found = None
                    attempt -= 1
                    time.sleep(0.1)
                    continue
                if found is not None:
                    response = httpx.Response(200)
                    response.found_id = found  # type: ignore[attr-defined]
                    return response
            try:
                response = self.client.request(method, path, json=body)
            except httpx.TransportError:
                if not self.resilient or time.monotonic() > deadline:
                    raise
                with self.lock:
                    self.retries += 1
                time.sleep(0.1)
                continue
            with self.lock:
                self.statuses[response.status_code] += 1
            assert response.status_code != 500, f"{method} {path}: 500 {response.text[:500]}"
            if response.status_code == 503 and self.resilient and time.monotonic() < deadline:
                assert "Retry-After" in response.headers, "503 without Retry-After"
                with self.lock:
                    self.retries += 1
                time.sleep(0.1)
                continue
            response.attempts = attempt  # type: ignore[attr-defined]
            return response

    def _check(self, response: httpx.Response, ok: tuple[int, ...], what: str) -> httpx.Response:
        if response.status_code not in ok:
            raise ScimError(f"{what}: {response.status_code} {response.text[:500]}")
        return response

    def find_id(self, endpoint: str, attribute: str, value: str) -> str | None:
        """A filter by GET query, what IdPs do after a 409 or an unanswered create."""
        response = self.client.get(f"/{endpoint}", params={"filter": f"{attribute} eq {json.dumps(value)}"})
        if response.status_code != 200:
            raise httpx.TransportError(f"lookup answered {response.status_code}")
        resources = response.json().get("Resources", [])
        return str(resources[0]["id"]) if resources else None

    def _created_id(self, response: httpx.Response, what: str) -> str:
        if hasattr(response, "found_id"):
            return str(response.found_id)
        return str(self._check(response, (201,), what).json()["id"])

    # -- operations -------------------------------------------------------------------------------

    def user_spec(self, key: str, roles: list[str] | None = None, active: bool = True) -> UserSpec:
        return UserSpec(
            key=key,
            user_name=f"{key}",
            email=f"{key.upper()}@{self.domain}",
            display_name=f"User {key}",
            roles=sorted(roles or []),
            active=active,
        )

    def create_user(self, spec: UserSpec) -> str:
        self._count()
        lookup = (lambda: self.find_id("Users", "userName", spec.user_name)) if self.resilient else None
        response = self.call("POST", "/Users", spec.resource(), lookup=lookup)
        user_id = self._created_id(response, f"create {spec.key}")
        with self.lock:
            self.expected.users[spec.key] = spec
            self.expected.user_ids[spec.key] = user_id
        return user_id

    def create_group(self, name: str, members: list[str]) -> str:
        self._count()
        body = {
            "schemas": [GROUP],
            "displayName": name,
            "members": [{"value": self.expected.user_ids[key]} for key in members],
        }
        lookup = (lambda: self.find_id("Groups", "displayName", name)) if self.resilient else None
        response = self.call("POST", "/Groups", body, lookup=lookup)
        group_id = self._created_id(response, f"create group {name}")
        with self.lock:
            self.expected.groups[name] = set(members)
            self.expected.group_ids[name] = group_id
        return group_id

    def patch_members(self, name: str, add: list[str] = (), remove: list[str] = ()) -> None:  # type: ignore[assignment]
        self._count()
        operations: list[dict[str, Any]] = []
        if add:
            operations.append(
                {"op": "add", "path": "members", "value": [{"value": self.expected.user_ids[k]} for k in add]}
            )
        for key in remove:
            operations.append({"op": "remove", "path": f'members[value eq "{self.expected.user_ids[key]}"]'})
        response = self.call(
            "PATCH",
            f"/Groups/{self.expected.group_ids[name]}",
            {"schemas": [PATCH], "Operations": operations},
        )
        self._check(response, (200, 204), f"patch group {name}")
        with self.lock:
            self.expected.groups[name] = (self.expected.groups[name] | set(add)) - set(remove)

    def set_roles(self, key: str, roles: list[str]) -> None:
        self._count()
        response = self.call(
            "PATCH",
            f"/Users/{self.expected.user_ids[key]}",
            {
                "schemas": [PATCH],
                "Operations": [{"op": "replace", "path": "roles", "value": [{"value": r} for r in roles]}],
            },
        )
        self._check(response, (200, 204), f"set roles {key}")
        with self.lock:
            self.expected.users[key] = replace(self.expected.users[key], roles=sorted(roles))

    def set_active(self, key: str, active: bool) -> None:
        self._count()
        response = self.call(
            "PATCH",
            f"/Users/{self.expected.user_ids[key]}",
            {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": active}]},
        )
        self._check(response, (200, 204), f"set active {key}")
        with self.lock:
            self.expected.users[key] = replace(self.expected.users[key], active=active)

    def replace_user(self, key: str, display_name: str, roles: list[str]) -> None:
        self._count()
        spec = replace(self.expected.users[key], display_name=display_name, roles=sorted(roles))
        response = self.call("PUT", f"/Users/{self.expected.user_ids[key]}", spec.resource())
        self._check(response, (200,), f"replace {key}")
        with self.lock:
            self.expected.users[key] = spec

    def delete_user(self, key: str) -> None:
        self._count()
        response = self.call("DELETE", f"/Users/{self.expected.user_ids[key]}")
        ok = (204, 404) if self.resilient and getattr(response, "attempts", 1) > 1 else (204,)
        self._check(response, ok, f"delete {key}")
        with self.lock:
            self.expected.deleted[key] = self.expected.users.pop(key)
            for members in self.expected.groups.values():
                members.discard(key)


ROLES = ("vpn", "ops", "dev", "db")


def run_plan(
    sync: Sync,
    rng: random.Random,
    *,
    users: int,
    groups: int,
    deletes: int = 6,
    changes: int = 30,
    prefix: str = "u",
    between: Callable[[int], None] | None = None,
    parallel: int = 1,
) -> None:
    """An IdP full sync followed by incremental changes: users, groups with members, role and status
    changes, replacements and a few deletions. ``between(n)`` runs after the n-th operation."""
    step = 0

    def tick() -> None:
        nonlocal step
        step += 1
        if between is not None:
            between(step)

    keys = [f"{prefix}{i:03d}" for i in range(users)]
    specs = [
        sync.user_spec(key, rng.sample(ROLES, rng.randint(0, 2)), active=rng.random() > 0.1) for key in keys
    ]
    if parallel > 1:
        # The initial load with several connections, as Entra ID and Okta do.
        with ThreadPoolExecutor(parallel) as pool:
            for _ in pool.map(sync.create_user, specs):
                tick()
    else:
        for spec in specs:
            sync.create_user(spec)
            tick()
    for g in range(groups):
        sync.create_group(f"grp-{prefix}{g}", rng.sample(keys, rng.randint(3, min(12, users))))
        tick()
    for _ in range(changes):
        live = sorted(sync.expected.users)
        kind = rng.choice(("add", "remove", "roles", "active", "put"))
        key = rng.choice(live)
        if kind == "add":
            sync.patch_members(rng.choice(sorted(sync.expected.groups)), add=rng.sample(live, 2))
        elif kind == "remove":
            name = rng.choice(sorted(sync.expected.groups))
            members = sorted(sync.expected.groups[name])
            if members:
                sync.patch_members(name, remove=rng.sample(members, min(2, len(members))))
        elif kind == "roles":
            sync.set_roles(key, rng.sample(ROLES, rng.randint(0, 3)))
        elif kind == "active":
            sync.set_active(key, not sync.expected.users[key].active)
        else:
            sync.replace_user(key, f"Renamed {key}", rng.sample(ROLES, rng.randint(0, 2)))
        tick()
    for key in rng.sample(sorted(sync.expected.users), deletes):
        sync.delete_user(key)
        tick()


# -- verification ----------------------------------------------------------------------------------


@dataclass
class Verdict:
    problems: list[str]
    users: int
    identities_verified: int
    duplicates: int
    leftovers: int

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def counts(self) -> dict[str, int]:
        """What a scenario's report line shows of the end state."""
        return {
            "users": self.users,
            "identities_verified": self.identities_verified,
            "duplicates": self.duplicates,
            "leftovers": self.leftovers,
        }


def list_all(client: httpx.Client, endpoint: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    start = 1
    while True:
        page = client.get(f"/{endpoint}", params={"startIndex": start, "count": 200}).json()
        resources = page.get("Resources", [])
        found.extend(resources)
        start += len(resources)
        if not resources or start > int(page.get("totalResults", 0)):
            return found


def verify(
    client: httpx.Client,
    controller: Controller,
    source: str,
    expected: Expected,
    *,
    check_groups: bool = True,
) -> Verdict:
    """Compare the store (over SCIM) and the controller with the expected end state."""
    problems: list[str] = []
    users = {u["userName"]: u for u in list_all(client, "Users")}
    if set(users) != {spec.user_name for spec in expected.users.values()}:
        missing = {s.user_name for s in expected.users.values()} - set(users)
        extra = set(users) - {s.user_name for s in expected.users.values()}
        problems.append(f"users differ: missing={sorted(missing)[:5]} extra={sorted(extra)[:5]}")
    state = controller.state
    with state.lock:
        identities = list(state.identities.values())
    now = time.time()
    ours = [i for i in identities if i.tags.get("scimSource") == source]
    by_external: dict[str | None, list[Any]] = {}
    for identity in identities:
        by_external.setdefault(identity.external_id, []).append(identity)
    by_user = Counter(i.tags.get("scimId") for i in ours)
    duplicates = sum(len(v) - 1 for k, v in by_external.items() if k is not None and len(v) > 1)
    duplicates += sum(count - 1 for count in by_user.values() if count > 1)
    if duplicates:
        problems.append(
            f"{duplicates} duplicate identities (by externalId, or several tagged for one user): "
            f"{[(i.name, i.external_id) for i in ours if by_user[i.tags.get('scimId')] > 1][:6]}"
        )
    verified = 0
    for key, spec in expected.users.items():
        user = users.get(spec.user_name)
        if user is None:
            continue
        stored = (
            user.get("active", True),
            sorted(r["value"] for r in user.get("roles", [])),
            user.get("displayName"),
            [e.get("value") for e in user.get("emails", [])],
            user.get("id"),
        )
        if stored != (spec.active, spec.roles, spec.display_name, [spec.email], expected.user_ids[key]):
            problems.append(f"{key}: stored user differs from the acknowledged writes: {user}")
        view = user.get(STATUS, {})
        if view.get("provisioningState") != "synced":
            problems.append(
                f"{key}: provisioningState={view.get('provisioningState')} {view.get('lastError')}"
            )
            continue
        matches = by_external.get(spec.external_id, [])
        if len(matches) != 1:
            problems.append(f"{key}: {len(matches)} identities for {spec.external_id}")
            continue
        identity = matches[0]
        want = {
            "id": view.get("identityId"),
            "name": spec.user_name,
            "roleAttributes": expected.role_attributes(key),
            "disabled": not spec.active,
            "tags": {"managedBy": "ziti-scim", "scimSource": source, "scimId": expected.user_ids[key]},
            "isAdmin": False,
        }
        have = {
            "id": identity.id,
            "name": identity.name,
            "roleAttributes": sorted(identity.role_attributes),
            "disabled": identity.is_disabled(now),
            "tags": {k: identity.tags.get(k) for k in ("managedBy", "scimSource", "scimId")},
            "isAdmin": identity.is_admin,
        }
        if want != have:
            problems.append(f"{key}: identity {have} != expected {want}")
            continue
        verified += 1
    live_ids = {expected.user_ids[k] for k in expected.users}
    leftovers = [i for i in ours if i.tags.get("scimId") not in live_ids]
    leftovers += [
        i
        for spec in expected.deleted.values()
        for i in by_external.get(spec.external_id, [])
        if i not in leftovers
    ]
    if leftovers:
        problems.append(
            f"{len(leftovers)} leftover identities: {[(i.name, i.external_id) for i in leftovers][:5]}"
        )
    if check_groups:
        groups = {g["displayName"]: g for g in list_all(client, "Groups")}
        for name, members in expected.groups.items():
            have_members = {m["value"] for m in groups.get(name, {}).get("members", [])}
            want_members = {expected.user_ids[k] for k in members}
            if have_members != want_members:
                problems.append(f"group {name}: members differ ({len(have_members)} != {len(want_members)})")
    return Verdict(problems, len(users), verified, duplicates, len(leftovers))


def wait_converged(
    client: httpx.Client,
    controller: Controller,
    source: str,
    expected: Expected,
    *,
    timeout: float = 60.0,
) -> Verdict:
    deadline = time.monotonic() + timeout
    while True:
        verdict = verify(client, controller, source, expected)
        if verdict.ok or time.monotonic() > deadline:
            return verdict
        if os.environ.get("RESILIENCE_DEBUG"):
            print(round(time.monotonic() - deadline + timeout, 1), verdict.problems[:3])
        time.sleep(0.25)


def assert_converged(verdict: Verdict, controller: Controller, expected: Expected) -> None:
    assert verdict.ok, "\n".join(verdict.problems[:20])
    assert verdict.identities_verified == len(expected.users)
    assert controller.recorder.duplicate_creates() == {}, controller.recorder.duplicate_creates()


class Flapper:
    """Takes the controller down and up every ``period`` seconds in a background thread."""

    def __init__(self, state: EmulatorState, period: float = 0.3) -> None:
        self.state = state
        self.period = period
        self.flips = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        down = True
        while not self._stop.is_set():
            self.state.faults.set_down(down)
            self.flips += 1
            down = not down
            self._stop.wait(self.period)
        self.state.faults.set_down(False)

    def __enter__(self) -> Flapper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
