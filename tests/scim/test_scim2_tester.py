"""Acceptance 1: scim2-tester's whole suite against the live server, over loopback HTTP."""

from __future__ import annotations

import httpx2
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

from tests.scim.conftest import TOKEN_A, Live
from tests.support.scim2_tester import only_the_readonly_status_was_patched

BAD = {Status.ERROR, Status.CRITICAL, Status.DEVIATION}


def test_scim2_tester_finds_nothing_wrong(live: Live) -> None:
    with httpx2.Client(
        base_url=live.scim, headers={"Authorization": f"Bearer {TOKEN_A}"}, timeout=30
    ) as http:
        results = check_server(SyncSCIMClient(http))
    ran = [r for r in results if r.status is not Status.SKIPPED]
    failed = [
        (r.title, r.resource_type, r.status.name, r.reason)
        for r in results
        if r.status in BAD and not only_the_readonly_status_was_patched(r)
    ]
    assert len(ran) > 100, f"only {len(ran)} checks ran"
    for item in failed:
        print("FAILED CHECK", item)
    assert not failed, failed
    checked = {r.resource_type for r in ran}
    assert {"User", "Group"} <= checked
