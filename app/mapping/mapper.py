"""SCIM User (RFC 7643 §4.1, dict form) + its groups → desired OpenZiti identity."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from app.mapping.config import MappingConfig
from app.mapping.errors import MappingError
from app.mapping.identity import DesiredIdentity, GroupRef, MappingResult
from app.mapping.roles import collect_role_attributes
from app.mapping.scim_path import evaluate, scalar_text


@dataclass(frozen=True)
class _ExternalId:
    value: str
    raw: str
    steps: tuple[str, ...]
    notes: tuple[str, ...]


def _resolve_external_id(user: Mapping[str, object], config: MappingConfig) -> _ExternalId:
    path = config.external_id_path
    evaluation = evaluate(path, user, primary_fallback=config.primary_fallback)
    notes = list(evaluation.notes)
    texts = [t for t in (scalar_text(v) for v in evaluation.values) if t is not None and t.strip()]
    if not texts:
        why = "; ".join(notes) or "the attribute is absent, empty or not text"
        raise MappingError(path.text, f"no value for the OpenZiti externalId ({why})")
    if len(set(texts)) > 1:
        notes.append(f"{len(texts)} values found; used the first")
    raw = value = texts[0]
    steps: list[str] = []
    for step in config.external_id_transform:
        value = value.lower() if step == "lower" else value.strip()
        steps.append(step)
    if not value.strip():
        raise MappingError(path.text, "the externalId is empty after external_id_transform")
    if value != value.strip():
        notes.append("value has surrounding whitespace; add 'strip' to external_id_transform if unwanted")
    return _ExternalId(value, raw, tuple(steps), tuple(notes))


def _check_user(user: object) -> Mapping[str, object]:
    if not isinstance(user, Mapping):
        raise MappingError("", "the user resource must be a JSON object")
    return user


def map_user(user: Mapping[str, object], groups: Sequence[GroupRef], config: MappingConfig) -> MappingResult:
    """Map one user. Raises `MappingError` when the externalId or the name cannot be produced."""
    user = _check_user(user)
    external = _resolve_external_id(user, config)
    name = config.template.render(user, primary_fallback=config.primary_fallback)
    roles = collect_role_attributes(user, groups, config)
    is_admin = config.admin_group is not None and any(
        (g.display_name if config.group_attribute == "displayName" else g.external_id) == config.admin_group
        for g in groups
    )
    identity = DesiredIdentity(
        external_id=external.value,
        name=name,
        role_attributes=roles.attributes,
        auth_policy_id=config.auth_policy_id,
        is_admin=is_admin,
    )
    return MappingResult(identity, roles.dropped, external.notes + roles.warnings)


def explain_external_id(user: Mapping[str, object], config: MappingConfig) -> str:
    """One line for diagnostics: which attribute gave the externalId, how it was transformed, and the
    signer claim it must equal. Never raises for bad user data (the failure is described instead)."""
    signer = (
        f"pair with an ext-jwt signer using claimsProperty {config.claims_property!r} and useExternalId=true"
        if config.claims_property
        else "pair with an ext-jwt signer whose claimsProperty carries this value, useExternalId=true"
    )
    origin = f"preset {config.preset!r}, " if config.preset else ""
    try:
        external = _resolve_external_id(_check_user(user), config)
    except MappingError as exc:
        return f"no externalId from {exc.attribute or 'the user'}: {exc.detail} ({origin}{signer})"
    parts = [f"externalId {external.value!r} from {config.external_id}"]
    if external.steps:
        parts.append(f"sent as {external.raw!r}, then {' then '.join(external.steps)}")
    parts.extend(external.notes)
    return "; ".join(parts) + f" ({origin}{signer})"
