"""ZitiClient against the controller emulator (ziti_emulator) over real HTTP on 127.0.0.1.

The emulator validates every request body against the real management.yml and records violations, so
an empty ``spec_violations`` at the end proves the client's requests are what a controller accepts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest

from app.ziti.client import MANAGEMENT_API_PATH, MAX_IDS_PER_LIST, ZitiClient
from app.ziti.errors import (
    ZitiAuthenticationFailed,
    ZitiDuplicate,
    ZitiNotFound,
    ZitiOutcomeUnknown,
    ZitiValidationError,
)
from app.ziti.reads import CoalescedReads
from app.ziti.retry import RetryPolicy
from app.ziti.session import PasswordCredentials
from tests.support.emulator import emulator_app, running_emulator
from ziti_emulator import MANAGEMENT_BASE, EmulatorState, EmulatorThread

ADMIN = "admin"
ADMIN_PASSWORD = "emu-Admin-pw-1"


@dataclass
class SharedClock:
    """One fake clock for the emulator (epoch seconds) and the client (idle tracking, deadlines)."""

    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class NoWaitSleep:
    delays: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
def shared_clock() -> SharedClock:
    return SharedClock()


@pytest.fixture
def emulator(shared_clock: SharedClock) -> Iterator[EmulatorThread]:
    app = emulator_app(admin_username=ADMIN, admin_password=ADMIN_PASSWORD, clock=shared_clock)
    with running_emulator(app) as thread:
        yield thread


@pytest.fixture
def state(emulator: EmulatorThread) -> EmulatorState:
    return emulator.state


@pytest.fixture
def no_wait() -> NoWaitSleep:
    return NoWaitSleep()


@pytest.fixture
async def client(
    emulator: EmulatorThread, shared_clock: SharedClock, no_wait: NoWaitSleep
) -> AsyncIterator[ZitiClient]:
    async with ZitiClient(
        emulator.url,
        PasswordCredentials(ADMIN, ADMIN_PASSWORD),
        clock=shared_clock,
        sleep=no_wait,
        retry=RetryPolicy(max_attempts=4, base_delay=0.01),
    ) as c:
        yield c


async def test_identity_lifecycle(client: ZitiClient, state: EmulatorState) -> None:
    external_id = 'okta|00u"1\\ab'  # quote and backslash exercise the filter escaping end to end
    body = {
        "name": "alice@example.com",
        "type": "User",
        "isAdmin": False,
        "externalId": external_id,
        "roleAttributes": ["engineering"],
        "tags": {"scimSource": "okta", "scimId": "2819c223"},
    }
    identity_id = await client.create_identity(body)

    found = await client.find_identities_by_external_id(external_id)
    assert [i["id"] for i in found] == [identity_id]
    assert [i["id"] for i in await client.find_identities_by_tag("scimId", "2819c223")] == [identity_id]
    assert [i["id"] for i in await client.find_identities_by_name("alice@example.com")] == [identity_id]
    assert await client.find_identities_by_external_id("nobody") == []

    detail = await client.get_identity(identity_id)
    assert detail["externalId"] == external_id and detail["roleAttributes"] == ["engineering"]
    assert detail["disabled"] is False

    await client.patch_identity(
        identity_id, {"roleAttributes": ["engineering", "vpn"], "tags": {"scimId": "x"}}
    )
    detail = await client.get_identity(identity_id)
    assert detail["roleAttributes"] == ["engineering", "vpn"] and detail["tags"] == {"scimId": "x"}
    assert detail["externalId"] == external_id  # PATCH leaves absent keys alone
    await client.patch_identity(identity_id, {"externalId": None})  # sent as "": cleared
    assert (await client.get_identity(identity_id))["externalId"] is None
    await client.patch_identity(identity_id, {"externalId": external_id})

    await client.disable_identity(identity_id)  # emulator answers the empty 200 body
    assert (await client.get_identity(identity_id))["disabled"] is True
    await client.enable_identity(identity_id)
    assert (await client.get_identity(identity_id))["disabled"] is False

    await client.delete_identity(identity_id)
    with pytest.raises(ZitiNotFound):
        await client.get_identity(identity_id)
    with pytest.raises(ZitiNotFound):
        await client.delete_identity(identity_id)
    await client.delete_identity(identity_id, missing_ok=True)
    assert state.spec_violations == []


async def test_duplicates_and_validation(client: ZitiClient, state: EmulatorState) -> None:
    await client.create_identity({"name": "bob", "type": "User", "isAdmin": False, "externalId": "e-bob"})
    with pytest.raises(ZitiDuplicate) as dup:
        await client.create_identity(
            {"name": "bob2", "type": "User", "isAdmin": False, "externalId": "e-bob"}
        )
    assert dup.value.field == "externalId" and dup.value.status == 400
    with pytest.raises(ZitiDuplicate) as dup:
        await client.create_identity({"name": "bob", "type": "User", "isAdmin": False})
    assert dup.value.field == "name"
    with pytest.raises(ZitiValidationError) as bad:
        await client.create_identity(
            {"name": "carol", "type": "User", "isAdmin": False, "roleAttributes": ["#hash"]}
        )
    assert not isinstance(bad.value, ZitiDuplicate) and bad.value.field == "roleAttributes"


async def test_paging_over_many_identities(emulator: EmulatorThread, state: EmulatorState) -> None:
    for i in range(1105):
        state.create_identity(f"seed-{i:04d}", external_id=f"ext-{i}", tags={"scimSource": "seed"})
    calls: list[tuple[str, str, int | None]] = []
    async with ZitiClient(
        emulator.url,
        PasswordCredentials(ADMIN, ADMIN_PASSWORD),
        on_request=lambda m, p, s, t: calls.append((m, p, s)),
    ) as client:
        seeded = await client.find_identities_by_tag("scimSource", "seed")
        assert len(seeded) == 1105 and len({i["id"] for i in seeded}) == 1105
        assert [c for c in calls if c[1] == "/identities"] == [("GET", "/identities", 200)] * 3
        everything = await client.list_identities()
        assert len(everything) == 1106  # plus the default admin


async def test_sessions_renew_proactively_and_after_expiry(
    emulator: EmulatorThread, state: EmulatorState, shared_clock: SharedClock, no_wait: NoWaitSleep
) -> None:
    async with ZitiClient(
        emulator.url,
        PasswordCredentials(ADMIN, ADMIN_PASSWORD),
        clock=shared_clock,
        sleep=no_wait,
        session_mode="legacy",
    ) as client:
        await client.list_auth_policies()
        shared_clock.now += 29 * 60 + 30  # past the client's idle limit, inside the controller's 30 min
        await client.list_auth_policies()
        assert client.stats.authentications == 2 and client.stats.by_status[401] == 0
        state.drop_all_sessions()  # e.g. a controller restart
        await client.list_auth_policies()
        assert client.stats.authentications == 3 and client.stats.by_status[401] == 1
        assert client.session_kind == "legacy"


async def test_oidc_session_on_2x_refreshes_before_expiry_and_logs_in_again_on_401(
    client: ZitiClient, state: EmulatorState, shared_clock: SharedClock
) -> None:
    """2.x: GET /version offers OIDC_AUTH, so the client uses an OIDC access token (Bearer)."""
    await client.list_auth_policies()
    assert client.session_kind == "oidc" and client.controller_version == "v2.0.3"
    assert state.oidc.logins == 1 and state.sessions == {}  # no legacy zt-session was created
    shared_clock.now += 29 * 60 + 30  # the access token lives 30 min: refreshed a minute before
    await client.list_auth_policies()
    assert state.oidc.refreshes == 1 and state.oidc.logins == 1 and client.stats.by_status[401] == 0
    state.oidc.key = b"rotated-signing-key-0123456789abcdef"  # every token the client holds is now invalid
    await client.list_auth_policies()
    assert client.stats.by_status[401] == 1 and state.oidc.logins == 2  # refresh refused, new login


@pytest.mark.parametrize("mode", ["legacy", "oidc"])
async def test_wrong_password(emulator: EmulatorThread, mode: str) -> None:
    async with ZitiClient(
        emulator.url, PasswordCredentials(ADMIN, "not-the-password"), session_mode=mode  # type: ignore[arg-type]
    ) as bad:
        with pytest.raises(ZitiAuthenticationFailed) as info:
            await bad.list_identities()
    assert info.value.code == ("INVALID_AUTH" if mode == "legacy" else None)
    assert emulator.state.last_auth_failure == "invalid username or password"


async def test_faults_are_retried_or_reported(
    client: ZitiClient, state: EmulatorState, no_wait: NoWaitSleep
) -> None:
    await client.authenticate()
    state.faults.inject(503, 2, method="GET", path_contains="/identities")
    assert len(await client.list_identities()) == 1
    state.faults.inject(429, 1, method="POST", path_contains="/identities", retry_after=3)
    new_id = await client.create_identity({"name": "dave", "type": "User", "isAdmin": False})
    assert 3.0 in no_wait.delays
    state.faults.inject(502, 1, method="POST", path_contains="/identities")
    with pytest.raises(ZitiOutcomeUnknown):
        await client.create_identity({"name": "erin", "type": "User", "isAdmin": False})
    assert [i["id"] for i in await client.find_identities_by_name("dave")] == [new_id]
    assert await client.find_identities_by_name("erin") == []  # the proxy answered; nothing was created


async def test_read_only_collections(client: ZitiClient) -> None:
    policies = await client.list_auth_policies()
    assert "default" in [p["id"] for p in policies]
    default = await client.get_auth_policy("default")
    assert default["primary"]["extJwt"]["allowed"] is True
    assert isinstance(await client.list_external_jwt_signers(), list)
    assert isinstance(await client.list_service_policies(), list)
    assert isinstance(await client.list_edge_router_policies(), list)


def test_emulator_base_matches_the_client_default() -> None:
    assert MANAGEMENT_BASE == MANAGEMENT_API_PATH


# -- coalesced identity reads (app.ziti.reads) ---------------------------------------------------


def _reads_body(i: int) -> dict[str, object]:
    return {"name": f"user{i}", "type": "User", "isAdmin": False, "tags": {"scimId": f"u{i}"}}


def _reads_of(state: EmulatorState, since: int) -> list[tuple[str, str]]:
    return [
        (r.method, r.path)
        for r in list(state.requests)[since:]
        if r.method == "GET" and "/identities" in r.path
    ]


async def test_concurrent_reads_go_as_one_list_call(client: ZitiClient, state: EmulatorState) -> None:
    ids = [await client.create_identity(_reads_body(i)) for i in range(30)]
    reads = CoalescedReads(client)
    mark = len(state.requests)
    # Asked for together (as the converges of a batch do): one list call carries every id.
    results = await asyncio.gather(*(reads.get(i) for i in [*ids, "no-such-id"]), return_exceptions=True)
    assert [r["id"] for r in results[:30] if isinstance(r, dict)] == ids
    assert isinstance(results[30], ZitiNotFound)
    assert state.identities[ids[3]].tags == {"scimId": "u3"}
    assert _reads_of(state, mark) == [("GET", MANAGEMENT_BASE + "/identities")]


async def test_a_lone_read_is_the_plain_get(client: ZitiClient, state: EmulatorState) -> None:
    identity_id = await client.create_identity(_reads_body(1))
    reads = CoalescedReads(client)
    mark = len(state.requests)
    assert (await reads.get(identity_id))["name"] == "user1"
    with pytest.raises(ZitiNotFound):
        await reads.get("missing")
    assert [path.rsplit("/", 1)[-1] for _, path in _reads_of(state, mark)] == [identity_id, "missing"]


async def test_get_identities_reads_the_details_and_bounds_its_ids(client: ZitiClient) -> None:
    ids = [await client.create_identity(_reads_body(i)) for i in range(3)]
    found = await client.get_identities([*ids, "unknown"])
    assert sorted(found) == sorted(ids)
    assert found[ids[0]]["tags"] == {"scimId": "u0"} and found[ids[0]]["isAdmin"] is False
    with pytest.raises(ValueError):
        await client.get_identities([])
    with pytest.raises(ValueError):
        await client.get_identities([f"id{i}" for i in range(MAX_IDS_PER_LIST + 1)])
