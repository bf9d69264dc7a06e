"""The provisioning status a client sends back is ignored, in either place it may put it.

A user's status (``identityId``, ``provisioningState``, ``lastError``) is computed by the service and
shown in its own extension, :data:`~app.constants.STATUS_EXTENSION`, every attribute ``readOnly``:
values a client sends are ignored (RFC 7643 §2.2; RFC 7644 §3.5.1 for PUT). Earlier versions showed the
same attributes inside the writable :data:`~app.constants.ZITI_EXTENSION`, so a client that read a user
then and writes it back sends them there. Both are removed from a body before validation, so that

- a POST or PUT, and a PATCH whose value is an object (no ``path``, or the path of either extension),
  succeeds whatever the source's ``unknown`` policy, and the ziti extension keeps only what it publishes;
- an operation left with nothing to write is dropped (a PATCH of nothing else answers the user unchanged).

A PATCH whose ``path`` names one status attribute (``…:Status:provisioningState``, or the same name
under the ziti extension as before) still answers ``400`` ``mutability``: it asks for nothing but a
read-only change (RFC 7644 §3.5.2). The legacy form is rewritten to the Status one to get that answer.
"""

from __future__ import annotations

from typing import Any

from app.constants import STATUS_ATTRIBUTES, STATUS_EXTENSION, ZITI_EXTENSION

_STATUS = STATUS_EXTENSION.lower()
_ZITI = ZITI_EXTENSION.lower()
_KEYS = {name.lower(): name for name in STATUS_ATTRIBUTES}


def without_status(payload: Any) -> Any:
    """A resource body or a PatchOp body without the status attributes (see the module docstring)."""
    if not isinstance(payload, dict):
        return payload
    operations_key = next((key for key in payload if key.lower() == "operations"), None)
    if operations_key is None:
        return _resource(payload)
    if not isinstance(payload[operations_key], list):
        return payload
    kept = [op for op in (_operation(op) for op in payload[operations_key]) if op is not None]
    return {**payload, operations_key: kept}


def _is_status_key(key: str) -> bool:
    folded = key.lower()
    if folded == _STATUS or folded.startswith(_STATUS + ":"):
        return True
    return folded.startswith(_ZITI + ":") and folded[len(_ZITI) + 1 :] in _KEYS


def _resource(document: dict[str, Any]) -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    for key, value in document.items():
        if not isinstance(key, str):
            cleaned[key] = value
        elif _is_status_key(key):
            continue
        elif key.lower() == _ZITI and isinstance(value, dict):
            cleaned[key] = {k: v for k, v in value.items() if not (isinstance(k, str) and k.lower() in _KEYS)}
        else:
            cleaned[key] = value
    return cleaned


def _operation(operation: Any) -> Any:
    if not isinstance(operation, dict):
        return operation
    path_key = next((key for key in operation if key.lower() == "path"), None)
    value_key = next((key for key in operation if key.lower() == "value"), None)
    path = operation.get(path_key) if path_key is not None else None
    value = operation.get(value_key) if value_key is not None else None
    if path is not None and not isinstance(path, str):
        return operation
    if isinstance(path, str):
        folded = path.strip().lower()
        if folded == _STATUS:
            return None
        if folded.startswith(_ZITI + ":") and folded[len(_ZITI) + 1 :] in _KEYS:
            return {**operation, path_key: f"{STATUS_EXTENSION}:{_KEYS[folded[len(_ZITI) + 1 :]]}"}
        if folded != _ZITI:
            return operation
    if value_key is None or not isinstance(value, dict):
        return operation
    cleaned = _resource(value) if path is None else {
        k: v for k, v in value.items() if not (isinstance(k, str) and k.lower() in _KEYS)
    }
    if value and not cleaned:
        return None
    return {**operation, value_key: cleaned}
