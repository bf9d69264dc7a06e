"""Admission of a user write: a write that leaves the identity as it was last applied is not marked."""

from __future__ import annotations

from typing import Any

from app.config import PolicyConfig
from app.constants import STATUS_EXTENSION
from app.mapping import load_mapping
from app.scim.provider import load_provider
from app.store import provisioning, queue
from app.store.storage import SqlStorage
from app.store.types import Admission
from tests.reconcile.conftest import SOURCE, Harness, user_document

BEFORE = user_document("u1", "alice", email="alice@example.com", displayName="Alice")
"""The document :func:`synced` stores."""


async def admit(
    harness: Harness,
    user_id: str,
    user_name: str,
    *,
    before: dict[str, Any] | None = BEFORE,
    groups: tuple[str, ...] = (),
    **fields: Any,
) -> Admission:
    document = user_document(user_id, user_name, **fields)
    refs = [{"value": f"group-{name}", "display": name} for name in groups]
    async with harness.db.transaction(write=True) as tx:
        return await harness.hooks().admit(tx, SOURCE, user_id, document, refs, before=before)


async def synced(harness: Harness, user_id: str = "u1") -> str:
    await harness.put_user(user_id, "alice", email="alice@example.com", displayName="Alice")
    assert await harness.converge(user_id) == "synced"
    record = await harness.record(user_id)
    assert record is not None and record["state"] == "synced" and record["identity_id"]
    return str(record["identity_id"])


async def test_a_new_user_is_marked(harness: Harness) -> None:
    admitted = await admit(harness, "u1", "alice", before=None, email="alice@example.com")
    assert admitted == Admission({"provisioningState": "pending"}, converge=True)


async def test_a_write_that_leaves_the_identity_as_applied_is_not_marked(harness: Harness) -> None:
    identity_id = await synced(harness)
    calls = len(harness.controller.calls)
    # displayName is not mapped (the generic preset names the identity after userName).
    admitted = await admit(harness, "u1", "alice", email="alice@example.com", displayName="Alice Liddell")
    assert admitted == Admission({"provisioningState": "synced", "identityId": identity_id}, converge=False)
    # What the converge would have found: nothing to do, no controller call.
    assert await harness.converge("u1") == "synced"
    assert len(harness.controller.calls) == calls


async def test_a_write_that_changes_the_identity_is_marked(harness: Harness) -> None:
    identity_id = await synced(harness)
    changes: list[dict[str, Any]] = [
        {"user_name": "alice2", "email": "alice@example.com"},  # the name
        {"user_name": "alice", "email": "alice@example.org"},  # the externalId
        {"user_name": "alice", "email": "alice@example.com", "active": False},  # disabled
        {"user_name": "alice", "email": "alice@example.com", "roles": [{"value": "ops"}]},  # roleAttributes
    ]
    for change in changes:
        admitted = await admit(harness, "u1", change.pop("user_name"), **change)
        assert admitted == Admission({"provisioningState": "pending", "identityId": identity_id}, converge=True)


async def test_a_change_of_the_document_hidden_by_the_groups_is_marked(harness: Harness) -> None:
    """The role ``ops`` came both from the document and from the group ``ops``: dropping it from the
    document leaves today's identity as it is, but not the identity of every group membership (a
    concurrent change of the groups on PostgreSQL may be converged from the document before this one)."""
    await harness.put_user("u1", "alice", groups=("ops",), email="alice@example.com", roles=[{"value": "ops"}])
    assert await harness.converge("u1") == "synced"
    before = user_document("u1", "alice", email="alice@example.com", roles=[{"value": "ops"}])
    same = await admit(
        harness, "u1", "alice", before=before, groups=("ops",), email="alice@example.com",
        roles=[{"value": "ops"}], displayName="Other",
    )  # fmt: skip
    assert not same.converge
    dropped = await admit(harness, "u1", "alice", before=before, groups=("ops",), email="alice@example.com")
    assert dropped.converge


async def test_a_write_without_the_document_it_replaces_is_marked(harness: Harness) -> None:
    await synced(harness)
    admitted = await admit(harness, "u1", "alice", before=None, email="alice@example.com", displayName="Alice")
    assert admitted.converge


async def test_a_user_with_a_change_waiting_is_marked_again(harness: Harness) -> None:
    await synced(harness)
    async with harness.db.transaction(write=True) as tx:
        await queue.mark(tx, SOURCE, ["u1"])  # e.g. a group change not converged yet
    admitted = await admit(harness, "u1", "alice", email="alice@example.com", displayName="Other")
    assert admitted.converge and admitted.view is not None
    assert admitted.view["provisioningState"] == "pending"


async def test_a_user_being_converged_is_marked_again(harness: Harness) -> None:
    await synced(harness)
    async with harness.db.transaction(write=True) as tx:
        await queue.mark(tx, SOURCE, ["u1"])
        claim = await queue.claim(tx, SOURCE, "u1")
    assert claim is not None
    admitted = await admit(harness, "u1", "alice", email="alice@example.com", displayName="Other")
    assert admitted.converge, "the claim keeps the mark until it settles: the write marks it again"


async def test_a_record_not_settled_is_marked(harness: Harness) -> None:
    await synced(harness)
    async with harness.db.transaction(write=True) as tx:
        await provisioning.record_error(tx, SOURCE, "u1", "controller unavailable")
    admitted = await admit(harness, "u1", "alice", email="alice@example.com", displayName="Other")
    assert admitted.converge


async def test_settled_target_reads_only_a_settled_record() -> None:
    target = {"name": "alice"}
    settled: dict[str, Any] = {
        "identity_id": "i1", "state": "synced", "last_error": None, "applied": {"target": target},
    }  # fmt: skip
    assert provisioning.settled_target(settled) == target  # type: ignore[arg-type]
    for change in ({"identity_id": None}, {"state": "failed"}, {"last_error": "x"}, {"applied": {}}):
        assert provisioning.settled_target({**settled, **change}) is None  # type: ignore[arg-type]
    assert provisioning.settled_target(None) is None


async def test_a_new_user_name_the_identity_does_not_show_is_recorded(harness: Harness) -> None:
    """The record keeps the user's userName (audit, doctor): a write changing it goes through the upsert."""
    harness.configure(mapping=load_mapping({"preset": "generic", "name_template": "{emails[primary eq true].value}"}))
    await synced(harness)
    admitted = await admit(harness, "u1", "alice.l", email="alice@example.com", displayName="Alice")
    assert admitted.converge
    record = await harness.record("u1")
    assert record is not None and record["user_name"] == "alice.l"


async def test_a_sqlite_write_reads_the_record_with_the_user_and_still_sees_a_change_waiting(
    harness: Harness,
) -> None:
    """Through the storage, as a PATCH runs: the read before the write takes the user's record in the same
    statement (SQLite), and the admission decides from it as from its own read."""
    provider = load_provider(PolicyConfig())
    user_type = next(rt for rt in provider.resource_types if rt.id == "User")
    storage = SqlStorage(harness.db, provider, SOURCE, harness.hooks()).bound(
        write=True, request_id=None, operation=None
    )
    model = provider.model_for(user_type)
    made = await storage.create(user_type, model(user_name="alice", emails=[{"value": "alice@example.com"}]))
    assert await harness.converge(str(made.id)) == "synced"

    async def rename(display: str) -> dict[str, Any]:
        async with storage.operation():
            current = await storage.get(user_type, str(made.id), views=False)
            current.display_name = display
            return await storage.update(user_type, current, answer=True)  # type: ignore[no-any-return]

    status = STATUS_EXTENSION
    assert (await rename("A"))[status]["provisioningState"] == "synced"
    assert not await harness.dirty(str(made.id))
    async with harness.db.transaction(write=True) as tx:
        await queue.mark(tx, SOURCE, [str(made.id)])
    assert (await rename("B"))[status]["provisioningState"] == "pending"
    assert await harness.dirty(str(made.id))
