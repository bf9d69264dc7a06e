"""Acceptance 9: ``sync --dry-run`` lists exactly the out-of-band edits; ``sync`` repairs them; orphans are
only proposed, and removed with ``--delete-orphans``."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from app.constants import STATUS_EXTENSION
from app.observability import audit
from app.store.db import Database
from app.store.tables import dirty
from tests.provisioning.conftest import ADMIN_PASSWORD, TOKEN, Stack
from tests.support.configfile import command, environment, write_config

USER = "urn:ietf:params:scim:schemas:core:2.0:User"


def run_sync(
    stack: Stack, tmp_path: Path, source: str, database_url: str, *args: str
) -> subprocess.CompletedProcess[str]:
    config = write_config(
        tmp_path / "sync.toml", database_url=database_url, source=source, ziti_url=stack.emulator.url
    )
    return subprocess.run(
        command("sync", "--config", str(config), *args),
        env=environment(source, TOKEN, ADMIN_PASSWORD),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_sync_dry_run_lists_out_of_band_edits_and_sync_repairs_them(
    stack: Stack, tmp_path: Path, source_name: str, database_url: str
) -> None:
    with stack.client() as scim:
        ids = {
            name: scim.post(
                "/Users",
                json={
                    "schemas": [USER],
                    "userName": name,
                    "emails": [{"value": f"{name}@example.com"}],
                    "roles": [{"value": "staff"}],
                },
            ).json()["id"]
            for name in ("ann", "ben", "cid", "dot")
        }
    stack.settle()
    state = stack.state
    ann = state.identity_by_external_id("ann@example.com")
    ben = state.identity_by_external_id("ben@example.com")
    cid = state.identity_by_external_id("cid@example.com")
    ann.role_attributes = ["staff", "injected-admin"]  # edited out of band
    ben.disabled_at = state.now()  # disabled out of band
    del state.identities[cid.id]  # deleted out of band
    orphan = state.create_identity(
        "ghost",
        external_id="ghost@example.com",
        tags={
            "managedBy": "ziti-scim",
            "scimSource": source_name,
            "scimId": "gone",
            "scimDeployment": ann.tags["scimDeployment"],
        },
    )
    bystander = state.create_identity("hand-made", external_id="hand@example.com", role_attributes=["x"])

    dry = run_sync(stack, tmp_path, source_name, database_url, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    lines = [line.strip() for line in dry.stdout.splitlines()[1:] if line.strip()]
    assert dry.stdout.splitlines()[0] == "4 change(s) would be made:"
    assert any(line.startswith("patch") and ids["ann"] in line and "injected-admin" in line for line in lines)
    assert any(line.startswith("enable") and ids["ben"] in line for line in lines)
    assert any(line.startswith("create") and ids["cid"] in line for line in lines)
    assert any(line.startswith("delete-orphan") and orphan.id in line for line in lines)
    assert not any(ids["dot"] in line or bystander.id in line for line in lines)
    # A dry run changes nothing.
    assert state.identities[ann.id].role_attributes == ["staff", "injected-admin"]
    assert state.identity_by_external_id("cid@example.com") is None and orphan.id in state.identities

    repaired = run_sync(stack, tmp_path, source_name, database_url)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "after repair: 0 difference(s) left" in repaired.stdout
    assert "1 orphan(s) proposed, none removed" in repaired.stdout
    assert state.identities[ann.id].role_attributes == ["staff"]
    assert state.identities[ben.id].disabled_at is None
    assert state.identity_by_external_id("cid@example.com") is not None
    assert orphan.id in state.identities  # only proposed

    removed = run_sync(stack, tmp_path, source_name, database_url, "--delete-orphans")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert "after repair: 0 difference(s) left" in removed.stdout
    assert orphan.id not in state.identities
    kept = state.identities[bystander.id]
    assert (kept.name, kept.external_id, kept.role_attributes) == ("hand-made", "hand@example.com", ["x"])


def test_sync_against_unknown_tagged_identities_is_held_by_the_brake_and_audited(
    stack: Stack, tmp_path: Path, source_name: str, database_url: str
) -> None:
    """A controller full of identities tagged for this deployment and source that the database does not
    know (a lost or wrong database): plain ``sync`` only proposes them; ``--delete-orphans`` removes no
    more than the brake allows, and audits what it removed and what the brake held."""
    with stack.client() as scim:
        known = scim.post(
            "/Users", json={"schemas": [USER], "userName": "kept", "emails": [{"value": "kept@example.com"}]}
        )
        assert known.status_code == 201
    stack.settle()
    deployment = stack.state.identity_by_external_id("kept@example.com").tags["scimDeployment"]
    tags = {"managedBy": "ziti-scim", "scimSource": source_name, "scimDeployment": deployment}
    orphans = [
        stack.state.create_identity(
            f"orphan-{i}", external_id=f"orphan-{i}@example.com", tags={**tags, "scimId": f"unknown-{i}"}
        ).id
        for i in range(30)
    ]
    proposed = run_sync(stack, tmp_path, source_name, database_url)
    assert "30 orphan(s) proposed, none removed" in proposed.stdout, proposed.stdout + proposed.stderr
    assert all(identity_id in stack.state.identities for identity_id in orphans)

    result = run_sync(stack, tmp_path, source_name, database_url, "--delete-orphans")
    assert result.returncode == 1 and "mass-deprovision brake engaged" in result.stdout, result.stdout
    removed = [identity_id for identity_id in orphans if identity_id not in stack.state.identities]
    # brake_min (10) actions are allowed when the share is 100%; the 11th engages the brake.
    assert len(removed) == 10, len(removed)

    async def trail() -> list[dict[str, Any]]:
        db = Database(database_url)
        try:
            return await audit.read(db, limit=1000)
        finally:
            await db.dispose()

    entries = [e for e in asyncio.run(trail()) if e["operation"] == "sync --delete-orphans"]
    done = {e["identity_id"] for e in entries if e["action"] == "delete" and e["outcome"] == "done"}
    held = [e["identity_id"] for e in entries if e["action"] == "delete" and e["outcome"] == "held"]
    assert done == set(removed)
    assert len(held) == 1 and held[0] in set(orphans) - set(removed)
    assert stack.state.identity_by_external_id("kept@example.com") is not None


async def _hold_lease(database_url: str, source: str, user_id: str, seconds: float) -> None:
    """Another process claims the user's dirty row (as a live service does) and stops renewing it."""
    db = Database(database_url)
    try:
        async with db.transaction(write=True) as conn:
            now = time.time()
            await conn.execute(
                insert(dirty).values(
                    source=source, user_id=user_id, generation=1, due_at=now, attempts=0,
                    claimed_until=now + seconds,
                )
            )
    finally:
        await db.dispose()


def test_sync_waits_for_a_lease_held_by_another_process(
    stack: Stack, tmp_path: Path, source_name: str, database_url: str
) -> None:
    """Issue 16: ``sync`` next to a running service must not re-plan while the service holds a row it
    marked; it waits until the row is finished or the lease expires and takes it over."""
    with stack.client() as scim:
        user_id = scim.post(
            "/Users",
            json={"schemas": [USER], "userName": "eve", "emails": [{"value": "eve@example.com"}]},
        ).json()["id"]
    eve = stack.identity("eve@example.com")  # once converged
    eve.role_attributes = ["injected-admin"]
    asyncio.run(_hold_lease(database_url, source_name, user_id, seconds=3.0))

    repaired = run_sync(stack, tmp_path, source_name, database_url)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "1 change(s) to make" in repaired.stdout
    assert "after repair: 0 difference(s) left" in repaired.stdout
    assert stack.state.identities[eve.id].role_attributes == []


def test_sync_keeps_the_identity_of_a_user_skipped_for_a_missing_email(
    stack: Stack, tmp_path: Path, source_name: str, database_url: str
) -> None:
    """A user that lost its email is skipped, not gone: its identity is no orphan for the full sync."""
    with stack.client() as scim:
        created = scim.post(
            "/Users", json={"schemas": [USER], "userName": "eve", "emails": [{"value": "eve@example.com"}]}
        ).json()
        stack.settle()
        assert scim.put(f"/Users/{created['id']}", json={"schemas": [USER], "userName": "eve"}).status_code == 200
        (eve,) = stack.settle()
        assert eve[STATUS_EXTENSION]["provisioningState"] == "skipped"
    identity = stack.state.identity_by_external_id("eve@example.com")
    assert identity is not None

    repaired = run_sync(stack, tmp_path, source_name, database_url)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "delete-orphan" not in repaired.stdout
    assert repaired.stdout.splitlines()[:2] == [
        "0 change(s) to make:",
        "1 user(s) skipped, a value their identity needs is missing:",
    ]
    assert identity.id in stack.state.identities
