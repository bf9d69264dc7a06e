"""Issue 11 acceptance: ziti-scim never touches an identity that is not its own (over real HTTP).

Covers the admin take-over attempt, adoption of a token-enrolled identity under ``name_conflict =
"refuse"``, cross-source and cross-deployment identities, ``sync`` on an empty database, creates that the
controller applied before answering 429/503, and a 404 on PATCH that is not a deleted identity.
"""

from __future__ import annotations

import asyncio
import copy
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Config, PolicyConfig, SourceConfig, ZitiConfig, hash_token
from app.constants import STATUS_EXTENSION as STATUS
from app.diagnostics.doctor import run_doctor
from app.observability import audit
from app.reconcile.ownership import PUBLIC_CONFLICT
from app.server import create_app
from app.store.db import Database
from tests.operations.test_audit_and_metrics import samples
from tests.provisioning.conftest import ADMIN_PASSWORD, TOKEN, Stack, add_signer
from tests.support.configfile import command, environment
from tests.support.idp import TestIdp
from tests.support.live import live_server
from ziti_emulator import EmulatorThread

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ADMIN_TOKEN = "ownership-admin-token-0123456789"
OTHER_TOKEN = "ownership-other-source-token-0123"


def user(name: str, email: str, **extra: Any) -> dict[str, Any]:
    return {"schemas": [USER], "userName": name, "emails": [{"value": email, "primary": True}], **extra}


def deactivate() -> dict[str, Any]:
    return {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": False}]}


def source(name: str, token: str, **options: Any) -> SourceConfig:
    """A generic source whose writes wait for convergence, so that each answer shows the verdict."""
    mapping = {"preset": "generic", **options.pop("mapping", {})}
    options.setdefault("wait_for_sync", 10.0)
    return SourceConfig(
        name=name,
        kind="generic",
        token_hashes=(hash_token(token),),
        policy=PolicyConfig(),
        mapping=mapping,
        options=options,
    )


@pytest.fixture
def serve(emulator: EmulatorThread, idp: TestIdp, database_url: str) -> Callable[..., Any]:
    """Run ziti-scim on the test's database with the given sources (several apps may run in turn)."""
    signer_id = add_signer(emulator, idp)

    @contextmanager
    def run(*sources: SourceConfig, deployment_id: str | None = None) -> Iterator[Stack]:
        config = Config(
            database_url=database_url,
            sources={s.name: s for s in sources},
            ziti=ZitiConfig(url=emulator.url, username="admin", password=ADMIN_PASSWORD),
            admin_token_hash=hash_token(ADMIN_TOKEN),
            deployment_id=deployment_id,
        )
        app = create_app(config)
        with live_server(app) as url:
            yield Stack(f"{url}/scim/v2", emulator, idp, app, signer_id, extra={"url": url, "config": config})

    return run


def scim(stack: Stack, token: str = TOKEN) -> httpx.Client:
    return httpx.Client(
        base_url=stack.scim_url,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"},
        timeout=30,
    )


def controller_detail(emulator: EmulatorThread, identity_id: str) -> bytes:
    """The controller's own answer for the identity, as bytes."""
    login = httpx.post(
        f"{emulator.management_url}/authenticate",
        params={"method": "password"},
        json={"username": "admin", "password": ADMIN_PASSWORD},
    )
    token = login.json()["data"]["token"]
    detail = httpx.get(f"{emulator.management_url}/identities/{identity_id}", headers={"zt-session": token})
    assert detail.status_code == 200
    return detail.content


def audit_entries(stack: Stack) -> list[dict[str, Any]]:
    answer = httpx.get(
        f"{stack.extra['url']}/admin/audit", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    return list(reversed(answer.json()["entries"]))


def test_an_admin_identity_is_untouched_by_create_deactivate_and_delete(
    serve: Callable[..., Any], source_name: str
) -> None:
    """The three-step take-over: the admin stays byte-for-byte the same, the SCIM client learns nothing."""
    with serve(source(source_name, TOKEN)) as stack:
        boss = stack.state.create_identity(
            "boss-admin",
            external_id="boss@example.com",
            is_admin=True,
            role_attributes=["break-glass"],
            tags={"owner": "secops"},
        )
        before, detail = copy.deepcopy(boss), controller_detail(stack.emulator, boss.id)
        with scim(stack) as client:
            created = client.post("/Users", json=user("mallory", "BOSS@example.com", roles=[{"value": "x"}]))
            assert created.status_code == 201
            answer = created.json()[STATUS]
            assert answer == {"provisioningState": "conflict", "lastError": PUBLIC_CONFLICT}
            for leak in (boss.id, "boss-admin", "secops", "break-glass", "isAdmin"):
                assert leak not in created.text
            assert stack.state.identities[boss.id] == before
            uid = created.json()["id"]
            off = client.patch(f"/Users/{uid}", json=deactivate())
            assert off.status_code == 200 and off.json()[STATUS]["provisioningState"] == "conflict"
            assert boss.id not in off.text
            assert stack.state.identities[boss.id] == before
            # The operator (not the SCIM client) is told which identity holds the user's externalId.
            doctor = asyncio.run(run_doctor(stack.extra["config"]))
            listed = [f for f in doctor.findings.items if f.code == "provisioning-conflict"]
            assert len(listed) == 1 and "mallory" in listed[0].message and boss.id in listed[0].message
            assert "admin" in listed[0].message
            deployment = [f for f in doctor.findings.items if f.code == "deployment-id"]
            assert len(deployment) == 1 and "scimDeployment=" in deployment[0].message
            assert client.delete(f"/Users/{uid}").status_code == 204
        assert stack.state.identities[boss.id] == before
        assert controller_detail(stack.emulator, boss.id) == detail
        assert len([i for i in stack.state.identities.values() if i.external_id == "boss@example.com"]) == 1
        conflicts = [e for e in audit_entries(stack) if e["action"] == "conflict"]
        assert len(conflicts) == 2 and {e["identity_id"] for e in conflicts} == {boss.id}
        assert all("admin" in e["error"] and e["outcome"] == "refused" for e in conflicts)
        metrics = samples(httpx.get(f"{stack.extra['url']}/metrics").text)
        assert metrics[("ziti_scim_ownership_conflicts_total", (("source", source_name),))] == 2


def test_a_token_enrolled_identity_is_adopted_under_name_conflict_refuse(
    serve: Callable[..., Any], source_name: str
) -> None:
    with serve(source(source_name, TOKEN, mapping={"name_conflict": "refuse"})) as stack:
        with stack.state.lock:
            signer = stack.state.signers[stack.signer_id]
            signer.enroll_to_token_enabled = True
            signer.enroll_name_claims_selector = "/preferred_username"
        token = stack.idp.token(email="hank@example.com", preferred_username="hank")
        enrolled = httpx.post(
            f"{stack.emulator.client_url}/enroll/token", json={}, headers={"Authorization": f"Bearer {token}"}
        )
        assert enrolled.status_code == 200, enrolled.text
        jit = stack.state.identity_by_external_id("hank@example.com")
        assert jit is not None and jit.name == "hank" and jit.tags == {}
        with scim(stack) as client:
            created = client.post("/Users", json=user("hank", "hank@example.com", roles=[{"value": "vpn"}]))
            assert created.status_code == 201
            assert created.json()[STATUS] == {"provisioningState": "synced", "identityId": jit.id}
            adopted = stack.state.identities[jit.id]
            assert adopted.tags["scimAdopted"] is True and adopted.tags["scimId"] == created.json()["id"]
            assert adopted.tags["scimDeployment"] and adopted.role_attributes == ["vpn"]
            assert client.delete(f"/Users/{created.json()['id']}").status_code == 204
        # on_delete_adopted defaults to "disable": an identity ziti-scim did not create is not deleted.
        assert stack.state.identities[jit.id].disabled_at is not None
        assert [e["action"] for e in audit_entries(stack)] == ["adopt", "patch", "disable"]


def test_another_sources_identity_is_not_taken_over_unless_configured(
    serve: Callable[..., Any], source_name: str
) -> None:
    other = f"{source_name}-b"
    with serve(source(source_name, TOKEN), source(other, OTHER_TOKEN, on_delete="disable")) as stack:
        with scim(stack, OTHER_TOKEN) as client:
            carl = client.post("/Users", json=user("carl", "carl@example.com", roles=[{"value": "b-role"}]))
            assert client.delete(f"/Users/{carl.json()['id']}").status_code == 204
        kept = stack.state.identity_by_external_id("carl@example.com")
        assert kept.disabled_at is not None and kept.tags["scimSource"] == other
        before = copy.deepcopy(kept)
        with scim(stack) as client:
            taken = client.post("/Users", json=user("carl", "carl@example.com"))
            assert taken.json()[STATUS] == {"provisioningState": "conflict", "lastError": PUBLIC_CONFLICT}
        assert stack.state.identities[kept.id] == before
        uid = taken.json()["id"]
    with serve(source(source_name, TOKEN, takeover_from=[other]), source(other, OTHER_TOKEN)) as stack:
        with scim(stack) as client:
            again = client.put(f"/Users/{uid}", json=user("carl", "carl@example.com"))
            assert again.json()[STATUS] == {"provisioningState": "synced", "identityId": kept.id}
        now = stack.state.identities[kept.id]
        assert now.tags["scimSource"] == source_name and now.disabled_at is None and now.role_attributes == []


def write_sync_config(
    path: Path, database_url: str, source_name: str, ziti_url: str, deployment: str
) -> Path:
    path.write_text(
        f"""
[server]
deployment_id = "{deployment}"

[database]
url = "{database_url}"

[ziti]
url = "{ziti_url}"
username = "admin"
password_env = "TEST_ZITI_PASSWORD"

[safety]
brake_max = 2

[sources.{source_name}]
kind = "generic"
"""
    )
    return path


def run_sync(config: Path, source_name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command("sync", "--config", str(config), *args),
        env=environment(source_name, TOKEN, ADMIN_PASSWORD),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_sync_on_an_empty_database_deletes_nothing(
    emulator: EmulatorThread, database_url: str, source_name: str, tmp_path: Path
) -> None:
    """Even with the same deployment id (a restored configuration) and --delete-orphans."""
    tags = {"managedBy": "ziti-scim", "scimSource": source_name, "scimDeployment": "dep-1"}
    made = [
        emulator.state.create_identity(f"u{i}", external_id=f"u{i}@e.x", tags={**tags, "scimId": str(i)})
        for i in range(5)
    ]
    before = copy.deepcopy(emulator.state.identities)
    config = write_sync_config(tmp_path / "sync.toml", database_url, source_name, emulator.url, "dep-1")
    proposed = run_sync(config, source_name, "--dry-run")
    assert proposed.returncode == 0, proposed.stderr
    kept = [line for line in proposed.stdout.splitlines() if "knows no users of this source" in line]
    assert len(kept) == 5
    for args in ((), ("--delete-orphans",)):
        done = run_sync(config, source_name, *args)
        assert done.returncode == 0, done.stdout + done.stderr
        assert emulator.state.identities == before
    assert all(identity.id in emulator.state.identities for identity in made)


def test_another_deployments_identities_are_never_touched(
    serve: Callable[..., Any], emulator: EmulatorThread, database_url: str, source_name: str, tmp_path: Path
) -> None:
    theirs = {"managedBy": "ziti-scim", "scimSource": source_name, "scimDeployment": "dep-theirs"}
    twin = emulator.state.create_identity(
        "dana", external_id="dana@example.com", tags={**theirs, "scimId": "their-dana"}
    )
    stray = emulator.state.create_identity("stray", tags={**theirs, "scimId": "their-stray"})
    mine = emulator.state.create_identity(
        "lost", tags={**theirs, "scimDeployment": "dep-mine", "scimId": "our-lost-user"}
    )
    before = {i.id: copy.deepcopy(emulator.state.identities[i.id]) for i in (twin, stray)}
    with serve(source(source_name, TOKEN), deployment_id="dep-mine") as stack:
        with scim(stack) as client:
            dana = client.post("/Users", json=user("dana", "dana@example.com"))
            assert dana.json()[STATUS]["provisioningState"] == "conflict"
            erin = client.post("/Users", json=user("erin", "erin@example.com"))
            assert erin.json()[STATUS]["provisioningState"] == "synced"
            assert client.delete(f"/Users/{dana.json()['id']}").status_code == 204
    config = write_sync_config(tmp_path / "sync.toml", database_url, source_name, emulator.url, "dep-mine")
    swept = run_sync(config, source_name, "--delete-orphans")
    assert swept.returncode == 0, swept.stdout + swept.stderr
    assert mine.id not in emulator.state.identities  # our own orphan goes, with the flag
    assert twin.id not in swept.stdout and stray.id not in swept.stdout
    assert {i: emulator.state.identities[i] for i in before} == before


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("name_conflict", ["suffix", "refuse"])
def test_a_create_applied_before_a_429_or_503_converges_to_one_identity(
    serve: Callable[..., Any], source_name: str, status: int, name_conflict: str
) -> None:
    with serve(source(source_name, TOKEN, mapping={"name_conflict": name_conflict})) as stack:
        stack.state.faults.inject(status, 1, method="POST", path_contains="/identities", apply=True)
        with scim(stack) as client:
            created = client.post("/Users", json=user("ivan", "ivan@example.com"))
        answer = created.json()[STATUS]
        assert answer["provisioningState"] == "synced", answer
        same = [i for i in stack.state.identities.values() if i.external_id == "ivan@example.com"]
        assert len(same) == 1 and same[0].id == answer["identityId"] and same[0].name == "ivan"
        assert same[0].tags["scimId"] == created.json()["id"] and same[0].tags["scimSource"] == source_name
        creates = [r for r in stack.state.requests if r.method == "POST" and r.path.endswith("/identities")]
        posts = [r.status for r in creates]
        assert posts == [status, 400]  # applied-then-refused, then the retry met the first create


def test_a_404_on_patch_for_a_missing_auth_policy_is_not_a_deleted_identity(
    serve: Callable[..., Any], source_name: str
) -> None:
    with serve(source(source_name, TOKEN)) as stack:
        with scim(stack) as client:
            created = client.post("/Users", json=user("judy", "judy@example.com"))
        identity_id = created.json()[STATUS]["identityId"]
    with serve(source(source_name, TOKEN, mapping={"auth_policy_id": "no-such-policy"})) as stack:
        mark = len(stack.state.requests)
        with scim(stack) as client:
            changed = client.put(f"/Users/{created.json()['id']}", json=user("judy", "judy@example.com"))
        answer = changed.json()[STATUS]
        assert answer["provisioningState"] == "failed" and "no-such-policy" in answer["lastError"]
        assert answer["identityId"] == identity_id
        calls = [(r.method, r.path.rsplit("/", 1)[-1], r.status) for r in list(stack.state.requests)[mark:]]
        assert ("PATCH", identity_id, 404) in calls and ("GET", identity_id, 200) in calls
        assert not any(method == "POST" and path == "identities" for method, path, _ in calls)
        same = [i for i in stack.state.identities.values() if i.external_id == "judy@example.com"]
        assert [i.id for i in same] == [identity_id]


def test_an_identity_made_admin_out_of_band_is_no_longer_changed(
    serve: Callable[..., Any], source_name: str
) -> None:
    with serve(source(source_name, TOKEN)) as stack:
        with scim(stack) as client:
            created = client.post("/Users", json=user("kim", "kim@example.com"))
            kim = stack.state.identities[created.json()[STATUS]["identityId"]]
            with stack.state.lock:
                kim.is_admin = True  # an operator promoted it
            before = copy.deepcopy(kim)
            off = client.patch(f"/Users/{created.json()['id']}", json=deactivate())
            assert off.json()[STATUS]["provisioningState"] == "conflict"
            assert stack.state.identities[kim.id] == before and kim.disabled_at is None
            assert client.delete(f"/Users/{created.json()['id']}").status_code == 204
        assert stack.state.identities[kim.id] == before
        assert [e["action"] for e in audit_entries(stack)][-2:] == ["conflict", "conflict"]


def test_an_identity_tagged_before_deployment_ids_is_kept_through_the_database_record(
    serve: Callable[..., Any], source_name: str
) -> None:
    with serve(source(source_name, TOKEN)) as stack:
        with scim(stack) as client:
            created = client.post("/Users", json=user("lee", "lee@example.com"))
            lee = stack.state.identities[created.json()[STATUS]["identityId"]]
            deployment = lee.tags["scimDeployment"]
            with stack.state.lock:
                del lee.tags["scimDeployment"]
            again = user("lee", "lee@example.com", roles=[{"value": "r"}])
            changed = client.put(f"/Users/{created.json()['id']}", json=again)
            assert changed.json()[STATUS] == {"provisioningState": "synced", "identityId": lee.id}
        assert lee.tags["scimDeployment"] == deployment and lee.role_attributes == ["r"]


def test_delete_orphans_goes_through_the_brake_and_the_audit_log(
    serve: Callable[..., Any], emulator: EmulatorThread, database_url: str, source_name: str, tmp_path: Path
) -> None:
    with serve(source(source_name, TOKEN), deployment_id="dep-1") as stack:
        with scim(stack) as client:
            assert client.post("/Users", json=user("max", "max@example.com")).status_code == 201
    tags = {"managedBy": "ziti-scim", "scimSource": source_name, "scimDeployment": "dep-1"}
    orphans = [emulator.state.create_identity(f"o{i}", tags={**tags, "scimId": f"gone-{i}"}) for i in range(4)]
    config = write_sync_config(tmp_path / "sync.toml", database_url, source_name, emulator.url, "dep-1")
    swept = run_sync(config, source_name, "--delete-orphans")
    assert swept.returncode == 1 and "mass-deprovision brake engaged" in swept.stdout
    left = [o.id for o in orphans if o.id in emulator.state.identities]
    assert len(left) == 2  # brake_max = 2
    entries = asyncio.run(_audit(database_url))
    swept_rows = [e for e in entries if e["operation"] == "sync --delete-orphans"]
    deleted = [e for e in swept_rows if e["outcome"] == "done"]
    assert sorted(e["identity_id"] for e in deleted) == sorted(o.id for o in orphans if o.id not in left)
    assert all(e["action"] == "delete" for e in deleted)
    # The removal the brake stopped is audited too; the rest of that source waits for the next sync.
    held = [e for e in swept_rows if e["outcome"] == "held"]
    assert len(held) == 1 and held[0]["identity_id"] in left and held[0]["action"] == "delete"
    assert emulator.state.identity_by_external_id("max@example.com") is not None


async def _audit(database_url: str) -> list[dict[str, Any]]:
    db = Database(database_url)
    try:
        return await audit.read(db)
    finally:
        await db.dispose()


def test_an_admin_made_by_the_admin_group_mapping_stays_ours_to_change(
    serve: Callable[..., Any], source_name: str
) -> None:
    with serve(source(source_name, TOKEN, mapping={"admin_group": "Ziti Admins"})) as stack:
        with scim(stack) as client:
            uid = client.post("/Users", json=user("ola", "ola@example.com")).json()["id"]
            group = client.post(
                "/Groups",
                json={
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                    "displayName": "Ziti Admins",
                    "members": [{"value": uid}],
                },
            ).json()["id"]
            assert stack.identity("ola@example.com").is_admin is True
            removal = {"op": "remove", "path": f'members[value eq "{uid}"]'}
            client.patch(f"/Groups/{group}", json={"schemas": [PATCH], "Operations": [removal]})
            assert stack.identity("ola@example.com").is_admin is False
            assert client.get(f"/Users/{uid}").json()[STATUS]["provisioningState"] == "synced"


def test_a_name_held_by_an_identity_that_cannot_be_adopted_is_a_conflict_under_refuse(
    serve: Callable[..., Any], source_name: str
) -> None:
    with serve(source(source_name, TOKEN, mapping={"name_conflict": "refuse"})) as stack:
        holder = stack.state.create_identity("nina", external_id="someone-else@example.com", tags={"team": "x"})
        before = copy.deepcopy(holder)
        with scim(stack) as client:
            created = client.post("/Users", json=user("nina", "nina@example.com"))
        assert created.status_code == 201
        assert created.json()[STATUS] == {"provisioningState": "conflict", "lastError": PUBLIC_CONFLICT}
        assert "someone-else" not in created.text and holder.id not in created.text
        assert stack.state.identities[holder.id] == before
        assert stack.identity("nina@example.com") is None
        refused = [e for e in audit_entries(stack) if e["action"] == "conflict"]
        assert [e["identity_id"] for e in refused] == [holder.id] and "name_conflict" in refused[0]["error"]


def test_on_delete_adopted_untag_gives_the_identity_back(serve: Callable[..., Any], source_name: str) -> None:
    with serve(source(source_name, TOKEN, on_delete_adopted="untag")) as stack:
        jit = stack.state.create_identity("pat", external_id="pat@example.com", role_attributes=["own"])
        with scim(stack) as client:
            created = client.post("/Users", json=user("pat", "pat@example.com"))
            assert created.json()[STATUS] == {"provisioningState": "synced", "identityId": jit.id}
            assert stack.state.identities[jit.id].tags["scimAdopted"] is True
            assert client.delete(f"/Users/{created.json()['id']}").status_code == 204
        given_back = stack.state.identities[jit.id]
        assert given_back.tags == {} and given_back.disabled_at is None
        assert [e["action"] for e in audit_entries(stack)] == ["adopt", "patch", "untag"]
