"""Enrollments: ``enrollment`` on identity create (§3.3) and 2.0 token enrollment (controller-api.md §7)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import jwt
from emu_support import AUDIENCE, ISSUER, Emu, SigningKey, error_of, new_identity


def test_ott_enrollment_on_create(admin: httpx.Client) -> None:
    ident = new_identity(admin, "device", enrollment={"ott": True})
    ott = admin.get(f"/identities/{ident}").json()["data"]["enrollment"]["ott"]
    assert jwt.decode(ott["jwt"], options={"verify_signature": False})["em"] == "ott"
    assert ott["expiresAt"].endswith("Z")
    listed = admin.get(f"/identities/{ident}/enrollments").json()["data"]
    assert [e["method"] for e in listed] == ["ott"]
    plain = new_identity(admin, "ext-jwt-only")
    assert admin.get(f"/identities/{plain}").json()["data"]["enrollment"] == {}


def _enroll(emu: Emu, token: str) -> httpx.Response:
    return httpx.post(emu.client_api + "/enroll/token", json={}, headers={"Authorization": f"Bearer {token}"})


def test_token_enrollment(emu: Emu, admin: httpx.Client, signing_key: SigningKey) -> None:
    signer = admin.post(
        "/external-jwt-signers",
        json={
            "name": "idp",
            "enabled": True,
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "certPem": signing_key.cert_pem(),
            "kid": signing_key.kid,
            "claimsProperty": "email",
            "useExternalId": True,
            "enrollToTokenEnabled": False,
            "enrollNameClaimsSelector": "/preferred_username",
            "enrollAttributeClaimsSelector": "/groups",
        },
    ).json()["data"]["id"]
    claims: dict[str, Any] = {
        "email": "new@example.com",
        "preferred_username": "newbie",
        "groups": ["eng", ""],
    }
    token = signing_key.token(emu.clock.now, **claims)
    not_allowed = _enroll(emu, token)
    assert (
        not_allowed.status_code == 409 and error_of(not_allowed)["code"] == "INVALID_ENROLLMENT_NOT_ALLOWED"
    )
    admin.patch(f"/external-jwt-signers/{signer}", json={"enrollToTokenEnabled": True})
    assert _enroll(emu, token).json() == {"data": {}, "meta": {}}
    created = emu.state.identity_by_external_id("new@example.com")
    assert created is not None and created.name == "newbie" and created.role_attributes == ["eng"]
    again = _enroll(emu, token)
    assert again.status_code == 409 and error_of(again)["code"] == "ENROLLMENT_IDENTITY_ALREADY_ENROLLED"
    bad = _enroll(emu, signing_key.token(emu.clock.now, aud="other", **claims))
    assert bad.status_code == 400 and error_of(bad)["code"] == "INVALID_ENROLLMENT_TOKEN"
    clash = _enroll(
        emu, signing_key.token(emu.clock.now, email="other@example.com", preferred_username="newbie")
    )
    assert clash.status_code == 500 and error_of(clash)["code"] == "UNHANDLED"


def test_token_enrollment_is_not_implemented_in_1_6(
    make_emu: Callable[..., Emu], signing_key: SigningKey
) -> None:
    emu = make_emu(flavor="1.6")
    assert _enroll(emu, signing_key.token(emu.clock.now)).status_code == 501
