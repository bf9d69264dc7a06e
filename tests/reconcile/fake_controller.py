"""An in-memory stand-in for the controller client (:class:`app.ziti.client.ZitiClient`) for the
reconciler's unit tests: the identity methods the reconciler calls, with the controller's rules that
the algorithm depends on, and a log of every call.

Rules kept (``controller/model/identity_manager.go``, ``controller/internal/routes/identity_router.go``):
``name`` and ``externalId`` are unique indexes (a duplicate is 400 ``COULD_NOT_VALIDATE`` with
``cause.field``, :class:`ZitiDuplicate` in the client); PATCH changes only the fields given and replaces
``tags`` as a whole; an unknown id is 404. ``fail`` makes the next call of a method raise, after
applying it when asked (an HA controller that applied a create, then answered 503).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.ziti.errors import ZitiDuplicate, ZitiError, ZitiNotFound

UNIQUE = ("name", "externalId")


@dataclass
class _Fault:
    error: ZitiError
    apply: bool


@dataclass
class FakeController:
    identities: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    faults: dict[str, _Fault] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # -- test set-up and inspection --------------------------------------------------------------

    def add(self, *, prefix: str = "pre", **fields: Any) -> dict[str, Any]:
        """Put an identity on the controller as someone else made it (token enrollment by default)."""
        identity = {
            "id": f"{prefix}-{next(self._ids)}",
            "typeId": "Default",
            "type": {"id": "Default", "name": "Default"},
            "isAdmin": False,
            "isDefaultAdmin": False,
            "externalId": None,
            "roleAttributes": [],
            "authPolicyId": "default",
            "disabled": False,
            "tags": {},
            "appData": {},
            "permissions": [],
            **fields,
        }
        self.identities[identity["id"]] = identity
        return identity

    def fail(self, method: str, error: ZitiError, *, apply: bool = False) -> None:
        """The next call of ``method`` raises ``error`` (after making the change when ``apply``)."""
        self.faults[method] = _Fault(error, apply)

    def writes(self) -> list[tuple[str, Any]]:
        """The calls that change the controller, in order."""
        reads = ("get_identity", "find_identities_by_tag", "find_identities_by_external_id")
        return [call for call in self.calls if call[0] not in (*reads, "find_identities_by_name")]

    def by_external_id(self, external_id: str) -> dict[str, Any]:
        (found,) = [i for i in self.identities.values() if i.get("externalId") == external_id]
        return found

    # -- the client's methods ----------------------------------------------------------------------

    def _enter(self, method: str, argument: Any) -> _Fault | None:
        self.calls.append((method, copy.deepcopy(argument)))
        fault = self.faults.pop(method, None)
        if fault is not None and not fault.apply:
            raise fault.error
        return fault

    @staticmethod
    def _leave(fault: _Fault | None) -> None:
        if fault is not None:
            raise fault.error

    def _get(self, identity_id: str) -> dict[str, Any]:
        if identity_id not in self.identities:
            raise ZitiNotFound(f"identity {identity_id} not found", status=404, code="NOT_FOUND")
        return self.identities[identity_id]

    def _check_unique(self, fields: Mapping[str, Any], identity_id: str | None) -> None:
        for key in UNIQUE:
            value = fields.get(key)
            if value is None:
                continue
            if any(i.get(key) == value and i["id"] != identity_id for i in self.identities.values()):
                raise ZitiDuplicate(
                    f"duplicate value '{value}' in unique index on identities store",
                    status=400,
                    code="COULD_NOT_VALIDATE",
                    cause={"field": key, "reason": "duplicate", "value": value},
                )

    async def get_identity(self, identity_id: str) -> dict[str, Any]:
        self._leave(self._enter("get_identity", identity_id))
        return copy.deepcopy(self._get(identity_id))

    async def create_identity(self, body: Mapping[str, Any]) -> str:
        fault = self._enter("create_identity", dict(body))
        self._check_unique(body, None)
        identity = self.add(prefix="made", **{k: v for k, v in body.items() if k != "type"})
        self._leave(fault)
        return str(identity["id"])

    async def patch_identity(self, identity_id: str, fields: Mapping[str, Any]) -> None:
        fault = self._enter("patch_identity", (identity_id, dict(fields)))
        identity = self._get(identity_id)
        self._check_unique(fields, identity_id)
        identity.update({k: copy.deepcopy(v) for k, v in fields.items() if v is not None})
        self._leave(fault)

    async def disable_identity(self, identity_id: str, duration_minutes: int = 0) -> None:
        fault = self._enter("disable_identity", identity_id)
        self._get(identity_id)["disabled"] = True
        self._leave(fault)

    async def enable_identity(self, identity_id: str) -> None:
        fault = self._enter("enable_identity", identity_id)
        self._get(identity_id)["disabled"] = False
        self._leave(fault)

    async def delete_identity(self, identity_id: str, *, missing_ok: bool = False) -> None:
        fault = self._enter("delete_identity", identity_id)
        if identity_id in self.identities:
            del self.identities[identity_id]
        elif not missing_ok:
            self._get(identity_id)
        self._leave(fault)

    def _find(self, method: str, argument: Any, match: Any) -> list[dict[str, Any]]:
        self._leave(self._enter(method, argument))
        return [copy.deepcopy(i) for i in self.identities.values() if match(i)]

    async def find_identities_by_tag(self, key: str, value: Any) -> list[dict[str, Any]]:
        return self._find("find_identities_by_tag", (key, value), lambda i: (i.get("tags") or {}).get(key) == value)

    async def find_identities_by_external_id(self, external_id: str) -> list[dict[str, Any]]:
        return self._find(
            "find_identities_by_external_id", external_id, lambda i: i.get("externalId") == external_id
        )

    async def find_identities_by_name(self, name: str) -> list[dict[str, Any]]:
        return self._find("find_identities_by_name", name, lambda i: i.get("name") == name)
