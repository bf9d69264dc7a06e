"""Value types passed between the SCIM layer, the mapper and the reconciler."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class GroupRef:
    """A SCIM Group the user belongs to (RFC 7643 §4.2): its server id, ``displayName``, ``externalId``."""

    id: str
    display_name: str
    external_id: str | None = None


@dataclass(frozen=True)
class DesiredIdentity:
    """What the OpenZiti identity should look like (Edge Management API ``identityCreate``, controller-api.md
    §3.3).

    ``name`` is the base name; on a name clash the reconciler tries `candidate_names` when the source's
    ``name_conflict`` is ``"suffix"``. ``role_attributes`` is sorted and free of duplicates.
    """

    external_id: str
    name: str
    role_attributes: tuple[str, ...]
    auth_policy_id: str
    is_admin: bool
    type: Literal["User"] = "User"

    def fingerprint(self) -> str:
        """SHA-256 (hex) of the canonical JSON of all fields: equal fingerprints ⇔ nothing to update."""
        doc = {
            "externalId": self.external_id,
            "name": self.name,
            "roleAttributes": list(self.role_attributes),
            "authPolicyId": self.auth_policy_id,
            "isAdmin": self.is_admin,
            "type": self.type,
        }
        canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


RoleSource = Literal["group", "role", "entitlement", "extension", "static"]
DropReason = Literal["empty", "reserved-prefix", "denied", "not-allowed", "not-a-string"]


@dataclass(frozen=True)
class DroppedRole:
    """A candidate role attribute that was left out, and why (``value`` is the transformed text)."""

    value: str
    source: RoleSource
    reason: DropReason


@dataclass(frozen=True)
class MappingResult:
    identity: DesiredIdentity
    dropped: tuple[DroppedRole, ...] = ()
    warnings: tuple[str, ...] = ()


def candidate_names(name: str, n: int) -> Iterator[str]:
    """``name``, ``name-2``, ``name-3`` … — ``n`` candidates in a fixed order (``n >= 1``)."""
    if n < 1:
        raise ValueError("n must be at least 1")
    yield name
    for i in range(2, n + 1):
        yield f"{name}-{i}"
