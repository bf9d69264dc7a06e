"""External JWT signer writes: create, PUT, PATCH, delete.

Implements ``docs/controller-api.md`` §4: ``name`` and ``issuer`` unique, exactly one of ``certPem`` /
``jwksEndpoint`` (otherwise 400 ``REFERENCED_ENTITY_NOT_FOUND``), ``kid`` defaulting to the certificate
fingerprint, ``claimsProperty`` defaulting to ``sub`` (1.6) or ``/sub`` (2.0), ``useExternalId`` false,
``targetToken`` ``ACCESS``; deleting a signer listed by an auth policy gives 409
``CAN_NOT_DELETE_REFERENCED_ENTITY``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from .bodyfields import Body, check_flat_tags
from .entities import ExtJwtSigner
from .errors import (
    can_not_delete_referenced,
    duplicate_error,
    field_error,
    invalid_cert_pem,
    not_found,
    referenced_entity_not_found,
    unhandled,
)
from .ids import new_id

if TYPE_CHECKING:
    from .state import EmulatorState

log = logging.getLogger("ziti_emulator")

STORE = "externalJwtSigners"
TARGET_TOKENS = ("ACCESS", "ID")


def cert_info(pem: str) -> tuple[str, str, float, float]:
    """(fingerprint, commonName, notBefore, notAfter) of a single-certificate PEM."""
    try:
        certs = x509.load_pem_x509_certificates(pem.encode())
    except ValueError as exc:
        raise invalid_cert_pem() from exc
    if len(certs) != 1:
        raise invalid_cert_pem()
    cert = certs[0]
    fingerprint = hashlib.sha1(cert.public_bytes(Encoding.DER)).hexdigest()  # noqa: S324 - ziti's format
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    common_name = str(names[0].value) if names else ""
    return (
        fingerprint,
        common_name,
        cert.not_valid_before_utc.timestamp(),
        cert.not_valid_after_utc.timestamp(),
    )


def _check_url(name: str, value: str | None) -> None:
    if value is None:
        return
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise field_error(name, f'{name} in body must be of type uri: "{value}"', value)


def _name_taken(state: EmulatorState, attr: str, value: str, exclude: str | None) -> bool:
    return any(getattr(s, attr) == value for s in state.signers.values() if s.id != exclude)


def _apply(state: EmulatorState, signer: ExtJwtSigner, body: Body, given: set[str] | None) -> None:
    """Copy body fields onto ``signer`` (``given`` None = full replace with defaults)."""

    def want(key: str) -> bool:
        return given is None or key in given

    default_claims = "sub" if state.flavor == "1.6" else "/sub"
    if want("enabled"):
        signer.enabled = bool(body.bool_("enabled"))
    if want("audience"):
        signer.audience = body.str_("audience")
    if want("certPem"):
        signer.cert_pem = body.str_("certPem") or None
    if want("jwksEndpoint"):
        signer.jwks_endpoint = body.str_("jwksEndpoint") or None
    if want("kid"):
        signer.kid = body.str_("kid") or None
    if want("claimsProperty"):
        signer.claims_property = body.str_("claimsProperty") or default_claims
    if want("useExternalId"):
        signer.use_external_id = bool(body.bool_("useExternalId"))
    if want("externalAuthUrl"):
        signer.external_auth_url = body.str_("externalAuthUrl")
    if want("clientId"):
        signer.client_id = body.str_("clientId")
    if want("scopes"):
        signer.scopes = body.str_list("scopes") or []
    if want("targetToken"):
        signer.target_token = body.enum("targetToken", TARGET_TOKENS) or "ACCESS"
    if want("tags"):
        signer.tags = body.map_("tags") or {}
    if want("enrollToCertEnabled"):
        signer.enroll_to_cert_enabled = bool(body.bool_("enrollToCertEnabled"))
    if want("enrollToTokenEnabled"):
        signer.enroll_to_token_enabled = bool(body.bool_("enrollToTokenEnabled"))
    if want("enrollNameClaimsSelector"):
        signer.enroll_name_claims_selector = body.str_("enrollNameClaimsSelector") or "/sub"
    if want("enrollAttributeClaimsSelector"):
        signer.enroll_attribute_claims_selector = body.str_("enrollAttributeClaimsSelector") or ""
    if want("enrollAuthPolicyId"):
        signer.enroll_auth_policy_id = body.str_("enrollAuthPolicyId") or "default"


def _finish(signer: ExtJwtSigner) -> None:
    """Exactly one key source; derive certificate facts and the default kid."""
    if signer.cert_pem is None and signer.jwks_endpoint is None:
        raise referenced_entity_not_found("jwksEndpoint", None, "jwksEndpoint or certPem is required")
    if signer.cert_pem is not None and signer.jwks_endpoint is not None:
        raise referenced_entity_not_found("certPem", "", "only one of jwksEndpoint or certPem may be set")
    _check_url("jwksEndpoint", signer.jwks_endpoint)
    _check_url("externalAuthUrl", signer.external_auth_url)
    if signer.cert_pem is not None:
        fingerprint, common_name, not_before, not_after = cert_info(signer.cert_pem)
        signer.fingerprint, signer.common_name = fingerprint, common_name
        signer.not_before, signer.not_after = not_before, not_after
        signer.kid = signer.kid or fingerprint
    else:
        signer.fingerprint = signer.common_name = None
        signer.not_before = signer.not_after = None


def _check_required(body: Body) -> tuple[str, str]:
    name = body.str_("name", required=True)
    body.bool_("enabled", required=True)
    issuer = body.str_("issuer", required=True)
    body.str_("audience", required=True)
    assert name is not None and issuer is not None
    return name, issuer


def create_signer(state: EmulatorState, data: Any) -> ExtJwtSigner:
    body = Body(data, "externalJwtSigner", "ExternalJwtSignerCreate")
    name, issuer = _check_required(body)
    check_flat_tags(body.map_("tags") or {}, STORE)
    with state.lock:
        now = state.now()
        signer = ExtJwtSigner(
            id=new_id(), name=name, created_at=now, updated_at=now, enabled=True, issuer=issuer, audience=None
        )
        _apply(state, signer, body, None)
        _finish(signer)
        if _name_taken(state, "name", name, None):
            raise duplicate_error(STORE, "name", name)
        if _name_taken(state, "issuer", issuer, None):
            raise duplicate_error(STORE, "issuer", issuer)
        state.signers[signer.id] = signer
    log.info("external jwt signer created: id=%s name=%s issuer=%s", signer.id, name, issuer)
    return signer


def get_signer(state: EmulatorState, signer_id: str) -> ExtJwtSigner:
    signer = state.signers.get(signer_id)
    if signer is None:
        raise not_found()
    return signer


def update_signer(state: EmulatorState, signer_id: str, data: Any, *, patch: bool) -> ExtJwtSigner:
    body = Body(data, "externalJwtSigner", "ExternalJwtSignerPatch" if patch else "ExternalJwtSignerUpdate")
    if not patch:
        _check_required(body)
    check_flat_tags(body.map_("tags") or {}, STORE)
    given = set(body.data) if patch else None
    with state.lock:
        current = get_signer(state, signer_id)
        name = body.str_("name") if given is None or "name" in given else current.name
        if name != current.name and (not name or _name_taken(state, "name", name, signer_id)):
            log.info("signer %s: rename to %r rejected silently (empty or duplicate)", signer_id, name)
            return current
        issuer = body.str_("issuer") if given is None or "issuer" in given else current.issuer
        if not issuer:
            raise field_error("issuer", "issuer in body is required", None)
        if _name_taken(state, "issuer", issuer, signer_id):
            raise unhandled(f"duplicate value '{issuer}' in unique index on {STORE} store")
        updated = dataclasses.replace(current)
        updated.name, updated.issuer = name or current.name, issuer
        _apply(state, updated, body, given)
        _finish(updated)
        updated.updated_at = state.now()
        state.signers[signer_id] = updated
        state.jwks.forget(current.jwks_endpoint)
    return updated


def referencing_policies(state: EmulatorState, signer_id: str) -> list[str]:
    return sorted(
        p.id
        for p in state.auth_policies.values()
        if signer_id in p.allowed_signers or p.secondary.get("requireExtJwtSigner") == signer_id
    )


def delete_signer(state: EmulatorState, signer_id: str) -> None:
    with state.lock:
        signer = get_signer(state, signer_id)
        refs = referencing_policies(state, signer_id)
        if refs:
            raise can_not_delete_referenced("externalJwtSigner", "authPolicy", refs, "allowedSigners")
        del state.signers[signer_id]
        state.jwks.forget(signer.jwks_endpoint)
