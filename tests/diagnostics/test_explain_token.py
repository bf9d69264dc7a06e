"""``ziti-scim explain-token`` against the emulator over real HTTP (issue 5 acceptance 2).

Every verdict is cross-checked with the controller's own answer to an ext-jwt login with the same token.
"""

from __future__ import annotations

import pytest

from tests.diagnostics.conftest import PATCH, Lab, user
from tests.support.idp import TestIdp
from ziti_emulator import EmulatorThread

BOB = user("bob", "bob@example.com", roles=[{"value": "vpn-users"}])


def setup_bob(lab: Lab) -> Lab:
    """Generic preset (externalId = lower-cased primary email), a signer reading 'email', bob provisioned."""
    lab.add_signer("email")
    lab.add_policy("service", "vpn-dial", ["#vpn-users"])
    lab.add_policy("edge-router", "routers", ["#all"])
    lab.user_ids = lab.provision(BOB)
    return lab


@pytest.fixture
def bob_lab(lab: Lab) -> Lab:
    """For tests that change the controller or the store."""
    return setup_bob(lab)


@pytest.fixture(scope="module")
def shared_bob(
    module_emulator: EmulatorThread, idp: TestIdp, tmp_path_factory: pytest.TempPathFactory
) -> Lab:
    """For read-only tests: one emulator and one store for the module."""
    return setup_bob(Lab(tmp_path_factory.mktemp("shared"), module_emulator, idp))


def explain(lab: Lab, token: str) -> tuple[int, str, dict[str, object]]:
    text = lab.explain(token)
    data = lab.explain(token, "--json")
    assert text.code == data.code
    return text.code, text.out, data.json()


def test_provisioned_user_succeeds(shared_bob: Lab) -> None:
    token = shared_bob.idp.token(email="bob@example.com")
    code, out, data = explain(shared_bob, token)
    assert code == 0, out
    assert data["outcome"] == "success" and data["reason"] == "ok"
    assert "signature verified with key" in out
    assert "claimsProperty 'email' selects claim 'email' = 'bob@example.com'" in out
    assert "RESULT: an ext-jwt login with this token would SUCCEED as identity 'bob', SCIM user 'bob'" in out
    assert token not in out, "the token is a credential and is never printed"
    assert shared_bob.login(token).status_code == 200


def test_token_from_stdin(shared_bob: Lab) -> None:
    token = shared_bob.idp.token(email="bob@example.com")
    result = shared_bob.run("explain-token", "-", stdin=f"Bearer {token}\n")
    assert result.code == 0 and "would SUCCEED" in result.out


def test_unprovisioned_user_is_explained(shared_bob: Lab) -> None:
    token = shared_bob.idp.token(email="carol@example.com")
    code, out, data = explain(shared_bob, token)
    assert code == 1
    assert data["reason"] == "no-identity"
    assert "no identity has externalId 'carol@example.com'" in out
    assert "the user was never provisioned through ziti-scim" in out
    assert shared_bob.login(token).status_code == 401
    assert shared_bob.state.last_auth_failure == "identity not found by externalId"


def test_stored_user_whose_provisioning_failed(bob_lab: Lab) -> None:
    bob_lab.state.faults.inject(400, count=None, method="POST", path_contains="/identities", envelope=True)
    bob_lab.provision(user("dana", "dana@example.com"))
    token = bob_lab.idp.token(email="dana@example.com")
    code, out, data = explain(bob_lab, token)
    assert code == 1
    assert data["reason"] == "not-provisioned"
    assert "SCIM user 'dana' of source corp" in out and "has this externalId, but provisioning failed" in out
    bob_lab.state.faults.clear()
    assert bob_lab.login(token).status_code == 401


def test_claim_mismatch_names_the_user_and_the_claim(bob_lab: Lab) -> None:
    """The signer reads 'sub' while the mapping keys on the email: the seed's mistake, seen from a token."""
    bob_lab.state.signers[bob_lab.signer_id].claims_property = "sub"
    token = bob_lab.idp.token(email="bob@example.com", sub="00u1b2c3d4")
    code, out, data = explain(bob_lab, token)
    assert code == 1
    assert data["reason"] == "wrong-claim"
    assert "no identity has externalId '00u1b2c3d4'" in out
    assert "the token's 'email' claim 'bob@example.com' is the externalId of SCIM user 'bob'" in out
    assert "fix: ziti edge update ext-jwt-signer test-idp --claims-property email" in out
    assert bob_lab.login(token).status_code == 401


def test_case_difference(shared_bob: Lab) -> None:
    token = shared_bob.idp.token(email="Bob@Example.com")
    code, out, data = explain(shared_bob, token)
    assert code == 1
    assert data["reason"] == "case-differs"
    assert "has externalId 'bob@example.com'; the token says 'Bob@Example.com'" in out
    assert "differ only in letter case" in out
    assert shared_bob.login(token).status_code == 401


def test_disabled_identity(bob_lab: Lab) -> None:
    with bob_lab.scim() as scim:
        uid = bob_lab.user_ids[0]
        off = {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": False}]}
        assert scim.patch(f"/Users/{uid}", json=off).status_code == 200
        bob_lab.wait_converged()
    token = bob_lab.idp.token(email="bob@example.com")
    code, out, data = explain(bob_lab, token)
    assert code == 1
    assert data["reason"] == "disabled"
    assert "is disabled: the IdP deactivated the user (SCIM active=false)" in out
    assert bob_lab.login(token).status_code == 401
    assert bob_lab.state.last_auth_failure == "identity is disabled"


def test_unknown_issuer(shared_bob: Lab, other_idp: TestIdp) -> None:
    token = other_idp.token(email="bob@example.com")
    code, out, data = explain(shared_bob, token)
    assert code == 1
    assert data["reason"] == "unknown-issuer"
    assert (
        "no ext-jwt signer has issuer 'https://other-idp.test/' (known issuers: 'https://idp.test/')" in out
    )
    assert "the token appears to belong to SCIM user 'bob'" in out
    assert "ziti edge create ext-jwt-signer '<name>' https://other-idp.test/" in out
    assert shared_bob.login(token).status_code == 401


def test_issuer_that_differs_by_a_trailing_slash(bob_lab: Lab) -> None:
    bob_lab.state.signers[bob_lab.signer_id].issuer = "https://idp.test"
    code, out, data = explain(bob_lab, bob_lab.idp.token(email="bob@example.com"))
    assert code == 1 and data["reason"] == "unknown-issuer"
    assert "fix: ziti edge update ext-jwt-signer test-idp --issuer https://idp.test/" in out


def test_auth_policy_that_does_not_allow_the_signer(bob_lab: Lab, other_idp: TestIdp) -> None:
    other = bob_lab.add_signer("email", name="other", idp=other_idp)
    default = bob_lab.state.auth_policies["default"]
    default.primary["extJwt"]["allowedSigners"] = [other]
    token = bob_lab.idp.token(email="bob@example.com")
    code, out, data = explain(bob_lab, token)
    assert code == 1
    assert data["reason"] == "auth-policy"
    assert "only allows the signers ['other'], not 'test-idp'" in out
    assert bob_lab.login(token).status_code == 401
    assert bob_lab.state.last_auth_failure == "auth policy does not allow this signer"


def test_use_external_id_false(bob_lab: Lab) -> None:
    bob_lab.state.signers[bob_lab.signer_id].use_external_id = False
    token = bob_lab.idp.token(email="bob@example.com")
    code, out, data = explain(bob_lab, token)
    assert code == 1 and data["reason"] == "use-external-id"
    assert "fix: ziti edge update ext-jwt-signer test-idp --use-external-id" in out
    assert (
        "identity 'bob' has externalId 'bob@example.com': it would match if the signer had useExternalId=true"
        in out
    )
    assert bob_lab.login(token).status_code == 401
    assert bob_lab.state.last_auth_failure == "identity not found by id"


def test_expired_token_and_wrong_audience(shared_bob: Lab) -> None:
    expired = shared_bob.idp.token(email="bob@example.com", exp=1_000_000_000)
    code, out, data = explain(shared_bob, expired)
    assert code == 1 and data["reason"] == "expired"
    foreign = shared_bob.idp.token(email="bob@example.com", aud="someone-else")
    code, out, data = explain(shared_bob, foreign)
    assert code == 1 and data["reason"] == "audience"
    assert "fix: ziti edge update ext-jwt-signer test-idp --audience someone-else" in out
    assert shared_bob.login(foreign).status_code == 401


def test_unreachable_jwks_is_reported_not_fatal(lab: Lab) -> None:
    lab.add_signer("email", jwks_url="http://127.0.0.1:9/jwks")
    lab.provision(BOB)
    code, out, data = explain(lab, lab.idp.token(email="bob@example.com"))
    assert code == 0
    assert "could not verify the signature: the JWKS at http://127.0.0.1:9/jwks could not be fetched" in out
    assert "(if the signature is valid: it could not be verified here)" in out


def test_forged_signature_is_refused(shared_bob: Lab, other_idp: TestIdp) -> None:
    forged = other_idp.token(email="bob@example.com", iss=shared_bob.idp.issuer)
    code, out, data = explain(shared_bob, forged)
    assert code == 1 and data["reason"] == "bad-signature"
    assert shared_bob.login(forged).status_code == 401


def test_bad_input_is_a_clear_error(shared_bob: Lab) -> None:
    result = shared_bob.explain("not-a-jwt")
    assert result.code == 2
    assert "this is not a JWT" in result.err and "Traceback" not in result.err
    empty = shared_bob.run("explain-token", "-", stdin="")
    assert empty.code == 2 and "no token given" in empty.err


def test_without_a_store_the_controller_side_is_still_explained(lab: Lab) -> None:
    lab.add_signer("email")
    code, out, data = explain(lab, lab.idp.token(email="zoe@example.com"))
    assert code == 1 and data["reason"] == "no-identity"
    assert "SCIM users not consulted: the SQLite database" in out


def test_no_controller_configured_means_cannot_tell(lab: Lab) -> None:
    lab.ziti_url = ""
    result = lab.explain(lab.idp.token(email="bob@example.com"))
    assert result.code == 2
    assert "RESULT: cannot tell (controller-config)" in result.out
