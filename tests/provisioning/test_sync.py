"""Acceptance 9: ``sync --dry-run`` lists exactly the out-of-band edits; ``sync`` repairs them."""

from __future__ import annotations

import subprocess
from pathlib import Path

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
        tags={"managedBy": "ziti-scim", "scimSource": source_name, "scimId": "gone"},
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
    assert state.identities[ann.id].role_attributes == ["staff"]
    assert state.identities[ben.id].disabled_at is None
    assert state.identity_by_external_id("cid@example.com") is not None
    assert orphan.id not in state.identities
    kept = state.identities[bystander.id]
    assert (kept.name, kept.external_id, kept.role_attributes) == ("hand-made", "hand@example.com", ["x"])
