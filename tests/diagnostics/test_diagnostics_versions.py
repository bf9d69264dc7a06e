"""explain-token and doctor reason like the controller release they talk to (app/diagnostics/versions.py).

Every verdict is cross-checked with the emulator's answer to the same ext-jwt login, in that release's
profile.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.diagnostics.versions import rules_for
from tests.diagnostics.conftest import Lab, user
from tests.diagnostics.test_explain_token import explain
from tests.support.emulator import emulator_app, running_emulator
from tests.support.idp import TestIdp

BOB = user("bob", "bob@example.com")


@pytest.fixture(params=["1.6", "2.0"])
def versioned_lab(request: pytest.FixtureRequest, tmp_path: Path, idp: TestIdp) -> Iterator[Lab]:
    with running_emulator(emulator_app(version=request.param)) as emulator:
        yield Lab(tmp_path, emulator, idp)


def test_rules_by_version() -> None:
    assert not rules_for("v1.6.20").kid_first and not rules_for("v1.6.20").revokes_oidc_on_disable
    assert rules_for("v2.0.0-pre5").kid_first and not rules_for("v2.0.2").revokes_oidc_on_disable
    assert rules_for("v2.0.3").kid_first and rules_for("v2.0.3").revokes_oidc_on_disable
    assert not rules_for("v2.1.0").kid_first and rules_for("v2.1.0").revokes_oidc_on_disable
    assert rules_for(None, 2).kid_first and not rules_for(None, 2).known


def test_provisioned_user_succeeds_on_each_version(versioned_lab: Lab) -> None:
    claims = "email" if versioned_lab.state.profile.version == "1.6" else "/email"
    versioned_lab.add_signer(claims)
    versioned_lab.provision(BOB)
    token = versioned_lab.idp.token(email="bob@example.com")
    code, out, data = explain(versioned_lab, token)
    assert code == 0 and data["outcome"] == "success", out
    assert versioned_lab.login(token).status_code == 200


def test_signers_sharing_a_key_are_a_failure_only_where_the_kid_picks(versioned_lab: Lab) -> None:
    """2.0.0-2.0.3 choose by kid (at random among holders); 1.x by issuer."""
    lab = versioned_lab
    lab.add_signer("email")
    lab.state.create_signer(
        {
            "name": "same-key-other-app",
            "issuer": "https://another-app.test",
            "audience": "another",
            "jwksEndpoint": lab.idp.jwks_url,
            "claimsProperty": "email",
            "useExternalId": True,
            "enabled": True,
        }
    )
    lab.provision(BOB)
    token = lab.idp.token(email="bob@example.com")
    code, out, data = explain(lab, token)
    lab.state.rng.seed(3)
    answers = {lab.login(token).status_code for _ in range(12)}
    if lab.state.profile.kid_first_signers:
        assert code == 1 and data["reason"] == "kid-ambiguous", out
        assert "at random" in out and "upgrade the controller past 2.0.3" in out
        assert answers == {200, 401}  # the emulator, too, fails some of the logins
    else:
        assert code == 0 and data["outcome"] == "success", out
        assert answers == {200}
    doctor = lab.doctor("--json").json()
    codes = [f["code"] for f in doctor["findings"]]
    assert ("signers-share-key" in codes) == lab.state.profile.kid_first_signers


def test_signer_without_audience_and_secondary_auth(lab: Lab) -> None:
    lab.add_signer("email")
    lab.provision(BOB)
    token = lab.idp.token(email="bob@example.com")
    policy = lab.state.create_auth_policy(
        {
            "name": "with-totp",
            "primary": {"extJwt": {"allowed": True, "allowedSigners": []}},
            "secondary": {"requireTotp": True},
        }
    )
    bob = lab.state.identity_by_external_id("bob@example.com")
    assert bob is not None
    bob.auth_policy_id = policy.id  # ziti-scim's own admin keeps the default policy (no MFA)
    code, out, data = explain(lab, token)
    assert code == 0 and "then the controller asks for a TOTP code (requireTotp)" in out
    doctor = lab.doctor("--json").json()
    assert "secondary-auth" in [f["code"] for f in doctor["findings"]]
    bob.auth_policy_id = "default"

    lab.state.signers[lab.signer_id].audience = None  # a signer made before audience was required
    code, out, data = explain(lab, token)
    assert code == 1 and data["reason"] == "audience" and "has no audience" in out
    assert lab.login(token).status_code == 401  # the controller agrees
    doctor = lab.doctor("--json").json()
    assert "signer-no-audience" in [f["code"] for f in doctor["findings"]] and doctor["errors"] >= 1


@pytest.mark.parametrize(("version", "warned"), [("1.6", True), ("2.0", True), ("2.0.3", False)])
def test_doctor_warns_that_disabling_does_not_end_oidc_sessions(
    version: str, warned: bool, tmp_path: Path, idp: TestIdp
) -> None:
    with running_emulator(emulator_app(version=version)) as emulator:
        lab = Lab(tmp_path, emulator, idp)
        lab.add_signer("email")
        report = lab.doctor("--json").json()
    found = [f for f in report["findings"] if f["code"] == "oidc-not-revoked-on-disable"]
    assert bool(found) == warned
    if warned:
        assert "accessTokenDuration" in " ".join(found[0]["fix"]) and "2.0.3" in " ".join(found[0]["fix"])
