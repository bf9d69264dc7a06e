"""claimsProperty semantics (1.x top-level name, 2.x JSON pointer) and the claim each mapping pairs with."""

from __future__ import annotations

from typing import Any

import pytest

from app.diagnostics.claims import claim_label, claim_path, expected_claims, resolve_claim, same_claim
from app.diagnostics.fixes import config_set, update_signer
from app.mapping import available_presets, load_mapping, load_preset
from ziti_emulator.extjwt import resolve_claim as emulator_resolve

CLAIMS: dict[str, Any] = {
    "sub": "u1",
    "email": "a@x",
    "/email": "literal-slash-key",
    "ext": {"uid": "nested"},
    "emails": ["first@x", "second@x"],
    "https://example.com/uid": "namespaced",
    "n": 7,
}


@pytest.mark.parametrize(
    "prop",
    [
        "sub",
        "/sub",
        "email",
        "/email",
        "/ext/uid",
        "ext/uid",
        "/emails/1",
        "/emails/9",
        "/https:~1~1example.com~1uid",
        "missing",
        "n",
    ],
)
@pytest.mark.parametrize(("flavor", "major"), [("1.6", 1), ("2.0", 2)])
def test_resolution_agrees_with_the_emulator(prop: str, flavor: str, major: int) -> None:
    assert resolve_claim(CLAIMS, prop, major) == emulator_resolve(CLAIMS, prop, flavor)


def test_forms() -> None:
    assert claim_path("/email", 1) == ("/email",) and claim_path("/email", 2) == ("email",)
    assert claim_path("email", None) == ("email",)
    assert claim_label(("ext", "uid")) == "/ext/uid" and claim_label(("email",)) == "email"
    assert same_claim("/email", "email", 2) and same_claim("email", "email", 1)
    assert not same_claim("/email", "email", 1)
    assert not same_claim("/ext/uid", "uid", 2)


@pytest.mark.parametrize("preset", available_presets())
def test_every_preset_pairs_with_its_signer_claim(preset: str) -> None:
    mapping = load_mapping({"preset": preset})
    expectation = expected_claims({"preset": preset}, mapping)
    assert expectation.claims[0] == load_preset(preset)["signer"]["claimsProperty"]
    assert expectation.origin == f"preset {preset!r}"


def test_alternate_claims_and_inference() -> None:
    okta = expected_claims({"preset": "okta"}, load_mapping({"preset": "okta"}))
    assert okta.claims == ("uid", "sub")  # the ID token carries the Okta id in 'sub'
    entra = expected_claims({"preset": "entra"}, load_mapping({"preset": "entra"}))
    assert entra.claims == ("preferred_username", "upn")
    # authentik with the username as key: the preset's 'sub' no longer applies, the claim is inferred
    raw = {"preset": "authentik", "external_id": "userName"}
    inferred = expected_claims(raw, load_mapping(raw))
    assert inferred.claims[0] == "preferred_username" and "inferred" in inferred.origin
    explicit = {"preset": "generic", "claims_property": "/ext/mail"}
    assert expected_claims(explicit, load_mapping(explicit)).claims == ("/ext/mail",)
    odd = {"preset": "generic", "external_id": "name.familyName"}
    assert not expected_claims(odd, load_mapping(odd)).known


def test_fixes_are_pasteable() -> None:
    assert update_signer("my signer", claims_property="/sub", use_external_id=True) == (
        "ziti edge update ext-jwt-signer 'my signer' --claims-property /sub --use-external-id"
    )
    assert config_set("sources.a.mapping", external_id='x"y', external_id_transform=[]) == (
        'in [sources.a.mapping] set external_id = "x\\"y", external_id_transform = []'
    )
