"""``ziti-scim doctor`` against the emulator over real HTTP (issue 5 acceptance 1)."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

from app.reconcile import safety
from app.store.db import Database
from tests.diagnostics.conftest import ADMIN_PASSWORD, Lab, user
from tests.support.idp import TestIdp
from tests.support.tls import make_tls_files
from ziti_emulator import EmulatorThread, create_emulator_app

AUTHENTIK_UID = hashlib.sha256(b"7-install-id").hexdigest()


def authentik_user() -> dict[str, object]:
    return {**user("akadmin", "admin@example.com"), "externalId": AUTHENTIK_UID}


def codes(report: Any) -> list[str]:
    return [str(finding["code"]) for finding in report["findings"]]


def test_seed_setup_signer_reads_email_while_mapping_writes_hashed_sub(lab: Lab) -> None:
    """The seed's failing setup: signer claimsProperty 'email', authentik's hashed uid as externalId."""
    lab.kind, lab.mapping = "authentik", {"preset": "authentik"}
    lab.add_signer("email")
    lab.provision(authentik_user())
    result = lab.doctor()
    assert result.code == 1, result.out
    assert "signer 'test-idp' reads the token's 'email' claim" in result.out
    assert "which is the token's 'sub' claim" in result.out
    assert "fix: ziti edge update ext-jwt-signer test-idp --claims-property sub" in result.out
    # the alternative config change keeps the signer and re-keys the identities
    assert 'external_id = "emails[primary eq true].value", claims_property = "email"' in result.out
    assert "doctor FAILED: 1 error(s)" in result.out
    # and the controller agrees that such a login fails
    assert lab.login(lab.idp.token(sub=AUTHENTIK_UID, email="admin@example.com")).status_code == 401


def test_seed_setup_with_use_external_id_false(lab: Lab) -> None:
    lab.add_signer("email", use_external_id=False)
    result = lab.doctor()
    assert result.code == 1
    assert "useExternalId=false" in result.out
    assert "fix: ziti edge update ext-jwt-signer test-idp --use-external-id" in result.out
    assert "signer-use-external-id" in codes(lab.doctor("--json").json())


def test_correct_setup_exits_zero_and_lists_signers_and_policies(lab: Lab) -> None:
    lab.kind, lab.mapping = "authentik", {"preset": "authentik"}
    lab.add_signer("sub")
    lab.add_policy("service", "vpn-dial", ["#vpn-users"])
    lab.add_policy("edge-router", "all-routers", ["#all"])
    lab.provision({**authentik_user(), "roles": [{"value": "vpn-users"}]})
    result = lab.doctor()
    assert result.code == 0, result.out
    assert "doctor passed: 0 error(s), 0 warning(s)" in result.out
    assert "1 ext-jwt signer:" in result.out and "test-idp: issuer https://idp.test/" in result.out
    assert "default (Default): ext-jwt allowed for any signer" in result.out
    assert "signer 'test-idp' (issuer https://idp.test/) reads claim 'sub'" in result.out
    assert "the 1 role attribute(s) of 1 user(s) are all used by a policy" in result.out
    assert "1 user(s): 1 synced" in result.out
    report = lab.doctor("--json").json()
    assert report["ok"] is True and report["errors"] == 0
    assert {"controller-ok", "signer-ok", "auth-policy-ok", "roles-ok", "brake-off"} <= set(codes(report))
    assert lab.login(lab.idp.token(sub=AUTHENTIK_UID)).status_code == 200


def test_claims_property_pointer_and_plain_name_are_both_accepted_on_2x(lab: Lab) -> None:
    lab.add_signer("/email")
    assert lab.doctor().code == 0
    lab.state.signers[lab.signer_id].claims_property = "email"
    assert lab.doctor().code == 0


def test_pointer_on_1x_is_an_error_with_the_plain_name_as_fix(lab_1x: Lab) -> None:
    lab_1x.add_signer("/email")
    result = lab_1x.doctor()
    assert result.code == 1
    assert "ziti v1.6.20 reads a top-level claim named literally '/email'" in result.out
    assert "fix: ziti edge update ext-jwt-signer test-idp --claims-property email" in result.out
    lab_1x.state.signers[lab_1x.signer_id].claims_property = "email"
    fixed = lab_1x.doctor()
    assert fixed.code == 0 and "(ziti v1.6.20, from GET /version)" in fixed.out


def test_auth_policy_that_allows_another_signer_only(lab: Lab, other_idp: TestIdp) -> None:
    lab.add_signer("email")
    other = lab.add_signer("email", name="other", idp=other_idp)
    policy = lab.state.create_auth_policy(
        {
            "name": "only-other",
            "primary": {"extJwt": {"allowed": True, "allowedSigners": [other]}},
            "secondary": {},
        }
    )
    lab.mapping = {"preset": "generic", "auth_policy_id": policy.id}
    lab.options = {"signer": "test-idp"}
    result = lab.doctor()
    assert result.code == 1
    assert "only allows the signers ['other'], not 'test-idp'" in result.out
    expected = (
        f"fix: ziti edge update auth-policy {policy.id} --primary-ext-jwt-allowed "
        f"--primary-ext-jwt-allowed-signers {other} --primary-ext-jwt-allowed-signers {lab.signer_id}"
    )
    assert expected in result.out
    # without the pin, the signer the policy admits is the one the users log in with: no error
    lab.options = {}
    unpinned = lab.doctor()
    assert unpinned.code == 0, unpinned.out
    assert "signer 'other' (issuer https://other-idp.test/) reads claim 'email'" in unpinned.out


def test_missing_auth_policy_and_no_signer(lab: Lab) -> None:
    lab.mapping = {"preset": "generic", "auth_policy_id": "no-such-policy"}
    result = lab.doctor("--json")
    assert result.code == 1
    found = codes(result.json())
    assert "signer-missing" in found and "auth-policy-missing" in found
    text = lab.doctor().out
    assert "ziti edge create ext-jwt-signer corp '<issuer>' --jwks-endpoint '<jwks-url>'" in text
    assert "--claims-property email --external-id" in text
    assert 'set auth_policy_id = "default"' in text


def test_unused_role_attributes_warn_with_the_case_hint_and_do_not_fail(lab: Lab) -> None:
    lab.add_signer("email")
    lab.add_policy("service", "eng-dial", ["#engineering"])
    lab.provision(user("dave", "dave@example.com", roles=[{"value": "Engineering"}]))
    result = lab.doctor()
    assert result.code == 0, result.out
    assert "role attribute(s) used by no service or edge-router policy: 'Engineering' (1 user)" in result.out
    assert "policy 'eng-dial' selects '#engineering' where the source produces 'Engineering'" in result.out
    assert 'fix: in [sources.corp.mapping] set role_case = "lower"' in result.out
    assert "1 of 1 user(s) match no edge-router policy" in result.out
    assert "doctor passed: 0 error(s), 2 warning(s)" in result.out


def test_brake_and_pause_are_shown(lab: Lab) -> None:
    """The rows the safety module writes (app.reconcile.safety) show in doctor until `resume`."""
    lab.add_signer("email")
    lab.provision(user("erin", "erin@example.com"))

    async def run(step: str) -> None:
        db = Database(str(lab.db_path))
        if step == "engage":
            brake = {"engaged_at": 1767225600.0, "reason": "12 disable/delete actions within 3600 s"}
            await safety.write_setting(db, safety.brake_key("corp"), brake)
            await safety.write_setting(db, safety.PAUSED, True)
        else:
            await safety.resume(db)
        await db.dispose()

    asyncio.run(run("engage"))
    result = lab.doctor()
    assert result.code == 0  # warnings never fail
    assert (
        "the mass-deprovision brake of source corp is ENGAGED (12 disable/delete actions within 3600 s; "
        "since 2026-01-01 00:00:00 UTC)"
    ) in result.out
    assert (
        "fix: review what would be removed (ziti-scim audit), then release it: ziti-scim resume" in result.out
    )
    assert "provisioning is PAUSED" in result.out
    asyncio.run(run("resume"))
    released = lab.doctor()
    assert "no mass-deprovision brake is engaged" in released.out and "PAUSED" not in released.out


def test_unreachable_controller_and_bad_credentials(lab: Lab) -> None:
    lab.add_signer("email")
    lab.password = "wrong-password"
    refused = lab.doctor()
    assert refused.code == 1
    assert "the controller refused the credentials of 'admin'" in refused.out
    assert "wrong-password" not in refused.out + refused.err
    lab.password = "emulator-admin-Pa55word"
    lab.ziti_url = "http://127.0.0.1:9"  # discard port: nothing listens
    down = lab.doctor()
    assert down.code == 1
    assert "cannot reach the controller at http://127.0.0.1:9" in down.out
    assert "fix: check [ziti] url" in down.out


def test_missing_database_is_a_warning_not_a_crash(lab: Lab) -> None:
    lab.add_signer("email")
    result = lab.doctor()
    assert result.code == 0
    assert f"the SQLite database {lab.db_path} does not exist" in result.out
    assert not lab.db_path.exists(), "doctor must not create the database"


def test_tls_verification_failure_names_the_ca_bundle_fix(tmp_path: Path, idp: TestIdp) -> None:
    tls = make_tls_files(tmp_path)
    app = create_emulator_app(admin_password=ADMIN_PASSWORD)
    with EmulatorThread(app, ssl_certfile=tls.server_cert, ssl_keyfile=tls.server_key) as emulator:
        lab = Lab(tmp_path, emulator, idp)
        assert emulator.url.startswith("https://")
        untrusted = lab.doctor("--json").json()
        assert "controller-tls" in codes(untrusted)
        text = lab.doctor().out
        assert f"TLS verification of {emulator.url} failed" in text
        assert 'fix: in [ziti] set ca_bundle = "/path/to/controller-ca.pem"' in text
        lab.ca_bundle = str(tls.ca_cert)
        trusted = lab.doctor("--json").json()
        assert "controller-ok" in codes(trusted) and "controller-tls" not in codes(trusted)


def test_invalid_mapping_is_reported_per_source(lab: Lab) -> None:
    lab.add_signer("email")
    lab.mapping = {"preset": "no-such-preset"}
    result = lab.doctor()
    assert result.code == 1
    assert "unknown preset 'no-such-preset'" in result.out
