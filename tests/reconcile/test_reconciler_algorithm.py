"""The reconciler's algorithm, one converge at a time, against an in-memory controller.

What it sends (the diff, and nothing for an unchanged user), which action it chooses (create, patch,
disable/enable, delete, adopt, take-over, untag), and when it refuses (an identity that is not its own,
an admin, a taken name or externalId), asserted on the controller's end state, the calls made, the
provisioning record and the audit rows.
"""

from __future__ import annotations

import dataclasses

from app.reconcile.ownership import PUBLIC_CONFLICT
from app.reconcile.settings import TAG_ADOPTED, TAG_DEPLOYMENT, TAG_ID, TAG_MANAGED_BY, TAG_SOURCE
from app.ziti.errors import ZitiBadRequest, ZitiOutcomeUnknown, ZitiUnavailable
from tests.reconcile.conftest import DEPLOYMENT, SOURCE, Harness

OUR_TAGS = {TAG_MANAGED_BY: "ziti-scim", TAG_SOURCE: SOURCE, TAG_ID: "u1", TAG_DEPLOYMENT: DEPLOYMENT}


async def test_a_new_user_costs_one_create_with_the_mapped_fields_and_our_tags(harness: Harness) -> None:
    await harness.put_user("u1", "alice", email="Alice@Example.com", groups=["devs", "ops"])

    assert await harness.converge("u1") == "synced"

    assert harness.controller.calls == [
        (
            "create_identity",
            {
                "type": "User",
                "isAdmin": False,
                "externalId": "alice@example.com",
                "authPolicyId": "default",
                "roleAttributes": ["devs", "ops"],
                "tags": OUR_TAGS,
                "name": "alice",
            },
        )
    ]
    identity = harness.controller.by_external_id("alice@example.com")
    record = await harness.record("u1")
    assert record is not None and record["identity_id"] == identity["id"]
    assert (record["state"], record["last_error"], record["adopted"]) == ("synced", None, False)
    assert await harness.audit() == [("create", identity["id"], "done")]
    assert not await harness.dirty("u1")


async def test_an_unchanged_user_costs_no_controller_call(harness: Harness) -> None:
    await harness.put_user("u1", "alice", email="alice@example.com")
    await harness.converge("u1")
    harness.controller.calls.clear()

    assert await harness.converge("u1") == "synced"

    assert harness.controller.calls == []
    assert len(await harness.audit()) == 1


async def test_a_change_rereads_the_identity_and_patches_only_the_difference(harness: Harness) -> None:
    await harness.put_user("u1", "alice", email="alice@example.com", groups=["devs"])
    await harness.converge("u1")
    identity_id = harness.controller.by_external_id("alice@example.com")["id"]
    harness.controller.calls.clear()
    await harness.put_user("u1", "alice", email="alice@example.com", groups=["devs", "sre"])

    assert await harness.converge("u1") == "synced"

    assert harness.controller.writes() == [("patch_identity", (identity_id, {"roleAttributes": ["devs", "sre"]}))]
    assert harness.controller.calls[0] == ("get_identity", identity_id)  # re-read before writing
    assert harness.controller.identities[identity_id]["roleAttributes"] == ["devs", "sre"]
    record = await harness.record("u1")
    assert record is not None and record["applied"]["target"]["roleAttributes"] == ["devs", "sre"]


async def test_active_false_disables_and_active_true_enables_without_a_patch(harness: Harness) -> None:
    await harness.put_user("u1", "alice", email="alice@example.com")
    await harness.converge("u1")
    identity_id = harness.controller.by_external_id("alice@example.com")["id"]

    harness.controller.calls.clear()
    await harness.put_user("u1", "alice", email="alice@example.com", active=False)
    assert await harness.converge("u1") == "synced"
    assert harness.controller.writes() == [("disable_identity", identity_id)]
    assert harness.controller.identities[identity_id]["disabled"] is True

    harness.controller.calls.clear()
    await harness.put_user("u1", "alice", email="alice@example.com", active=True)
    assert await harness.converge("u1") == "synced"
    assert harness.controller.writes() == [("enable_identity", identity_id)]
    assert harness.controller.identities[identity_id]["disabled"] is False


async def test_a_taken_name_gets_the_next_suffix_only_when_the_mapping_says_so(harness: Harness) -> None:
    harness.controller.add(name="alice", externalId="someone@else.test", tags={"owner": "ops"})
    await harness.put_user("u1", "alice", email="alice@example.com")

    harness.configure(mapping=dataclasses.replace(harness.settings.mapping, name_conflict="refuse"))
    assert await harness.converge("u1") == "conflict"
    record = await harness.record("u1")
    assert record is not None and (record["state"], record["last_error"]) == ("conflict", PUBLIC_CONFLICT)
    assert [i["name"] for i in harness.controller.identities.values()] == ["alice"]

    harness.configure(mapping=dataclasses.replace(harness.settings.mapping, name_conflict="suffix"))
    assert await harness.converge("u1") == "synced"
    assert harness.controller.by_external_id("alice@example.com")["name"] == "alice-2"
    assert harness.controller.by_external_id("someone@else.test")["tags"] == {"owner": "ops"}


async def test_a_rename_onto_an_externalid_held_by_another_identity_is_refused_untouched(
    harness: Harness,
) -> None:
    await harness.put_user("u1", "alice", email="alice@example.com")
    await harness.converge("u1")
    mine = harness.controller.by_external_id("alice@example.com")["id"]
    other = harness.controller.add(name="bob", externalId="bob@example.com")
    harness.controller.calls.clear()
    await harness.put_user("u1", "alice", email="bob@example.com")

    assert await harness.converge("u1") == "conflict"

    assert harness.controller.writes() == []  # the controller would answer 500; nothing is sent
    assert harness.controller.identities[mine]["externalId"] == "alice@example.com"
    assert harness.controller.identities[other["id"]]["externalId"] == "bob@example.com"
    assert await harness.audit() == [("create", mine, "done"), ("conflict", other["id"], "refused")]


async def test_an_identity_deleted_out_of_band_is_created_again(harness: Harness) -> None:
    await harness.put_user("u1", "alice", email="alice@example.com")
    await harness.converge("u1")
    first = harness.controller.by_external_id("alice@example.com")["id"]
    del harness.controller.identities[first]
    await harness.put_user("u1", "alice", email="alice@example.com", groups=["devs"])

    assert await harness.converge("u1") == "synced"

    second = harness.controller.by_external_id("alice@example.com")
    assert second["id"] != first and second["roleAttributes"] == ["devs"]
    record = await harness.record("u1")
    assert record is not None and record["identity_id"] == second["id"]


async def test_an_identity_that_stopped_being_ours_is_never_written(harness: Harness) -> None:
    await harness.put_user("u1", "alice", email="alice@example.com")
    await harness.converge("u1")
    identity = harness.controller.by_external_id("alice@example.com")
    identity["tags"] = {"owner": "someone who took it"}
    harness.controller.calls.clear()
    await harness.put_user("u1", "alice", email="alice@example.com", groups=["devs"])

    assert await harness.converge("u1") == "conflict"
    assert harness.controller.writes() == []
    assert identity["roleAttributes"] == []

    harness.controller.calls.clear()
    await harness.delete_user("u1")
    assert await harness.converge("u1") == "deprovisioned"
    assert harness.controller.writes() == []
    assert identity["id"] in harness.controller.identities


async def test_a_token_enrolled_identity_with_the_users_externalid_is_adopted(harness: Harness) -> None:
    enrolled = harness.controller.add(name="alice-laptop", externalId="alice@example.com")
    await harness.put_user("u1", "alice", email="alice@example.com", groups=["devs"])

    assert await harness.converge("u1") == "synced"

    assert [call[0] for call in harness.controller.writes()] == ["create_identity", "patch_identity", "patch_identity"]
    assert len(harness.controller.identities) == 1
    assert enrolled["tags"] == {**OUR_TAGS, TAG_ADOPTED: True}
    assert (enrolled["name"], enrolled["roleAttributes"]) == ("alice", ["devs"])
    record = await harness.record("u1")
    assert record is not None and record["adopted"] is True and record["identity_id"] == enrolled["id"]
    assert [row[0] for row in await harness.audit()] == ["adopt", "patch"]


async def test_adopt_refuse_and_an_admin_holder_leave_the_identity_untouched(harness: Harness) -> None:
    enrolled = harness.controller.add(name="alice-laptop", externalId="alice@example.com")
    await harness.put_user("u1", "alice", email="alice@example.com")
    harness.configure(adopt="refuse")
    assert await harness.converge("u1") == "conflict"
    assert enrolled["tags"] == {} and enrolled["name"] == "alice-laptop"

    harness.configure(adopt="adopt")
    enrolled["isAdmin"] = True
    assert await harness.converge("u1") == "conflict"
    assert enrolled["tags"] == {} and enrolled["name"] == "alice-laptop"
    assert [call[0] for call in harness.controller.writes()] == ["create_identity", "create_identity"]


async def test_another_sources_identity_is_taken_over_only_from_a_listed_source(harness: Harness) -> None:
    theirs = {TAG_MANAGED_BY: "ziti-scim", TAG_SOURCE: "old-idp", TAG_ID: "x9", TAG_DEPLOYMENT: DEPLOYMENT}
    held = harness.controller.add(name="alice", externalId="alice@example.com", tags=dict(theirs))
    await harness.put_user("u1", "alice", email="alice@example.com")

    assert await harness.converge("u1") == "conflict"
    assert held["tags"] == theirs

    harness.configure(takeover_from=frozenset({"old-idp"}))
    assert await harness.converge("u1") == "synced"
    assert held["tags"] == OUR_TAGS
    assert ("take-over", held["id"], "done") in await harness.audit()


async def test_a_create_applied_but_answered_503_is_found_by_our_tags_not_created_twice(
    harness: Harness,
) -> None:
    await harness.put_user("u1", "alice", email="alice@example.com")
    harness.controller.fail("create_identity", ZitiOutcomeUnknown("timed out"), apply=True)

    assert await harness.converge("u1") == "pending"
    record = await harness.record("u1")
    assert record is not None and record["identity_id"] is None and record["last_error"]
    assert await harness.dirty("u1")

    assert await harness.converge("u1") == "synced"
    assert len(harness.controller.identities) == 1
    identity = harness.controller.by_external_id("alice@example.com")
    assert [call[0] for call in harness.controller.calls].count("create_identity") == 1
    record = await harness.record("u1")
    assert record is not None and record["identity_id"] == identity["id"] and record["last_error"] is None


async def test_a_transient_error_is_retried_a_permanent_one_fails(harness: Harness) -> None:
    await harness.put_user("u1", "alice", email="alice@example.com")
    harness.controller.fail("create_identity", ZitiUnavailable("controller down", status=503))
    assert await harness.converge("u1") == "pending"
    assert await harness.dirty("u1")

    harness.controller.fail("create_identity", ZitiBadRequest("bad body", status=400, code="INVALID_FIELD"))
    assert await harness.converge("u1") == "failed"
    record = await harness.record("u1")
    assert record is not None and record["state"] == "failed" and "bad body" in record["last_error"]
    assert not await harness.dirty("u1")
    assert harness.controller.identities == {}


async def test_a_user_the_mapping_cannot_map_is_skipped_without_a_call(harness: Harness) -> None:
    await harness.put_user("u1", "alice")  # no email: the generic mapping has no externalId

    assert await harness.converge("u1") == "skipped"

    assert harness.controller.calls == []
    record = await harness.record("u1")
    assert record is not None and record["state"] == "skipped" and "email" in record["last_error"]


async def test_deleting_a_user_deletes_disables_or_untags_by_the_sources_options(harness: Harness) -> None:
    for user_id, name in (("u1", "alice"), ("u2", "bob")):
        await harness.put_user(user_id, name, email=f"{name}@example.com")
        await harness.converge(user_id)
    created = harness.controller.by_external_id("alice@example.com")["id"]
    disabled = harness.controller.by_external_id("bob@example.com")["id"]
    adopted = harness.controller.add(name="carol-laptop", externalId="carol@example.com")
    await harness.put_user("u3", "carol", email="carol@example.com")
    assert await harness.converge("u3") == "synced"

    await harness.delete_user("u1")
    assert await harness.converge("u1") == "deprovisioned"
    assert created not in harness.controller.identities
    assert await harness.record("u1") is None

    harness.configure(on_delete="disable")
    await harness.delete_user("u2")
    assert await harness.converge("u2") == "deprovisioned"
    assert harness.controller.identities[disabled]["disabled"] is True
    record = await harness.record("u2")
    assert record is not None and record["state"] == "disabled"

    harness.configure(on_delete_adopted="untag")
    await harness.delete_user("u3")
    assert await harness.converge("u3") == "deprovisioned"
    assert harness.controller.identities[adopted["id"]]["tags"] == {}  # handed back as it was found
    assert harness.controller.identities[adopted["id"]]["disabled"] is False
    actions = [(action, outcome) for action, _, outcome in await harness.audit()]
    assert actions[-3:] == [("delete", "done"), ("disable", "done"), ("untag", "done")]
