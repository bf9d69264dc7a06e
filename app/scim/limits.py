"""Bounded work per SCIM request: caps on PATCH operations and on values per multi-valued attribute, and a
PATCH applied in time linear in its size.

- A PatchOp with more than ``max_patch_operations`` operations is refused before it is validated:
  ``400 tooMany`` (RFC 7644 §3.12 lists ``tooMany`` for requests larger than the server will process).
- A multi-valued attribute (``roles``, ``emails``, ``entitlements``…) may hold at most
  ``max_attribute_values`` values, in a POST/PUT body and in the result of a PATCH: ``400 invalidValue``.
  A Group's ``members`` is exempt: membership PATCHes go through the delta path of
  :mod:`app.scim.handler`, and IdPs add thousands of members at once.
- scim2-models applies each PATCH operation to the whole resource (it compares the new values with every
  current one, snapshots and settles the attribute), so N ``add`` operations on one attribute cost O(N²).
  :func:`coalesce` merges consecutive ``add`` operations on the same plain multi-valued attribute into one
  operation with the same result: an entry equal to one added by an earlier operation is dropped, as the
  library would drop it; entries within one operation are left as the library leaves them.
  :func:`apply_linear` likewise applies a run of ``remove attr[value eq "…"]`` operations (Okta's and
  Entra's way to remove roles one by one) in one pass: the entries whose ``value`` equals one of the
  given values, compared as the filter compares them (the attribute's ``caseExact``), are removed, in one
  operation. Other operations still each scan their attribute, so their cost is bounded by the two caps
  (operations × values); the handler runs the application off the event loop.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from inspect import isclass
from typing import Any, cast

from scim2_models import BaseModel, InvalidValueException, PatchOp, PatchOperation, Path, TooManyException
from scim2_models.path import AttributeBinding, AttrPath, CompareOperator, Comparison, ValuePath

EXEMPT = frozenset({"members"})
"""Multi-valued attributes without a value cap (Group membership has its own linear path)."""


@dataclass(frozen=True)
class RequestLimits:
    """Per-request caps; the defaults match ``[server]`` in the README."""

    max_patch_operations: int = 1000
    max_attribute_values: int = 500


_OP_KEY = re.compile(rb'"op"\s*:', re.IGNORECASE)


def check_patch_body(body: bytes, limits: RequestLimits) -> None:
    """Refuse a PatchOp body naming more operations than the cap before decoding it.

    Decoding a large JSON body is one C call that holds the GIL for its whole duration (tens of ms for
    half a megabyte), so a body with more ``"op":`` keys than operations allowed is refused unread. (A key
    spelled with escapes escapes this count, not :func:`check_patch_size` after decoding.)
    """
    count = len(_OP_KEY.findall(body))
    if count > limits.max_patch_operations:
        raise TooManyException(
            detail=f"A PATCH may hold at most {limits.max_patch_operations} operations, this one has {count}"
        )


def check_patch_size(payload: Any, limits: RequestLimits) -> None:
    """Refuse a PatchOp body with too many operations, before any validation work is spent on it."""
    if not isinstance(payload, dict):
        return
    operations = next((value for key, value in payload.items() if key.lower() == "operations"), None)
    if isinstance(operations, list) and len(operations) > limits.max_patch_operations:
        raise TooManyException(
            detail=f"A PATCH may hold at most {limits.max_patch_operations} operations, "
            f"this one has {len(operations)}"
        )


def _lists(payload: dict[str, Any]) -> list[tuple[str, list[Any]]]:
    """The list-valued attributes of a resource body, its extensions' included."""
    found = []
    for key, value in payload.items():
        if isinstance(value, list) and key.lower() != "schemas":
            found.append((key, value))
        elif isinstance(value, dict) and ":" in key:
            found += [(f"{key}:{name}", item) for name, item in _lists(value)]
    return found


def check_resource_values(payload: Any, limits: RequestLimits) -> None:
    """Refuse a resource body whose multi-valued attribute holds more than the cap."""
    if not isinstance(payload, dict):
        return
    for name, values in _lists(payload):
        if name.rsplit(":", 1)[-1].lower() not in EXEMPT and len(values) > limits.max_attribute_values:
            raise InvalidValueException(detail=_too_many_values(name, len(values), limits))


def _too_many_values(name: str, count: int, limits: RequestLimits) -> str:
    return f"'{name}' may hold at most {limits.max_attribute_values} values, not {count}"


def value_counts(resource: Any) -> dict[str, int]:
    """How many values each multi-valued attribute of a resource (and of its extensions) holds."""
    counts: dict[str, int] = {}
    extensions = _extension_urns(type(resource))  # type: ignore[arg-type]  # classes hash
    for name in type(resource).model_fields:
        value = getattr(resource, name, None)
        if isinstance(value, list):
            if name != "schemas":
                counts[name] = len(value)
        elif value is not None and type(value) in extensions:
            urn = extensions[type(value)]
            counts.update({f"{urn}:{key}": count for key, count in value_counts(value).items()})
    return counts


@functools.cache
def _extension_urns(model: type[Any]) -> dict[type[Any], str]:
    """The extension models a resource model holds, by class, with their schema URN (found once per model:
    ``resource[extension]`` resolves a path each time, a quarter of a PATCH's value counting)."""
    return {extension: urn for urn, extension in getattr(model, "get_extension_models", dict)().items()}


def check_patched_values(before: dict[str, int], resource: Any, limits: RequestLimits) -> None:
    """Refuse a PATCH that grows a multi-valued attribute beyond the cap (a stored excess may shrink)."""
    for name, count in value_counts(resource).items():
        if (
            name.rsplit(":", 1)[-1] not in EXEMPT
            and count > limits.max_attribute_values
            and count > before.get(name, 0)
        ):
            raise InvalidValueException(detail=_too_many_values(name, count, limits))


def _entries(value: Any) -> list[Any] | None:
    """The entries of a plain ``add`` value, or None when one sets ``primary`` (which unmarks others)."""
    items = value if isinstance(value, list) else [value]
    for item in items:
        if not isinstance(item, dict) or any(k.lower() == "primary" and v for k, v in item.items()):
            return None
    return items


def _mergeable_field(operation: PatchOperation[Any], model: type[Any]) -> str | None:
    """The field an ``add`` on a plain multi-valued attribute of the resource itself writes, else None."""
    if operation.op != PatchOperation.Op.add or operation.path is None:
        return None
    if not isinstance(operation.path.ast, AttrPath) or operation.path.ast.sub_attr is not None:
        return None
    binding = operation.path.resolve()
    if (
        binding is None
        or binding.model is not model
        or not binding.is_multivalued
        or binding.sub_field_name is not None
        or binding.field_name in EXEMPT
        or _entries(operation.value) is None
    ):
        return None
    return str(binding.field_name)


class SameValue:
    """When scim2-models takes two values of one multi-valued attribute for the same value: the equality its
    PATCH ``add`` drops a value already present by, and its ``remove attr[value eq "…"]`` filter compares
    with (``scim2_models.path.access`` in 0.12, whose helpers are private). Built on its public parts: an
    added dict is read as the attribute's entry model; strings compare in the form
    ``AttributeBinding.comparable`` gives them (NFC, lower case unless ``caseExact``); an entry compares
    sub-attribute by sub-attribute; other values compare as they are. ``tests/scim/test_limits.py`` holds
    the merged and one-pass operations to what scim2-models gives operation by operation."""

    def __init__(self, model: type[BaseModel], field_name: str) -> None:
        self.model = model
        self.field_name = field_name
        item_type = model.get_field_root_type(field_name)
        self.entry_model = item_type if isclass(item_type) and issubclass(item_type, BaseModel) else None
        self.bindings: dict[str | None, AttributeBinding | None] = {}

    def entry(self, value: Any) -> Any:
        """``value`` as an entry of the attribute, as scim2-models reads an added one."""
        if isinstance(value, dict) and self.entry_model is not None:
            return self.entry_model.model_validate(value)
        return value

    def key(self, value: Any) -> Any:
        """A hashable key, equal for two entries that are the same value (entries of two types never are)."""
        if isinstance(value, BaseModel):
            names = type(value).model_fields
            return type(value), tuple(self.string_key(name, getattr(value, name)) for name in names)
        return self.string_key(None, value)

    def string_key(self, sub_field_name: str | None, value: Any) -> Any:
        """The key of one value of the attribute, or of its sub-attribute ``sub_field_name`` (Python name)."""
        if not isinstance(value, str):
            return value.model_dump() if isinstance(value, BaseModel) else value
        binding = self._binding(sub_field_name)
        try:
            return value if binding is None else binding.comparable(value)
        except ValueError:  # a string the policy cannot prepare equals no other value
            return object()

    def _binding(self, sub_field_name: str | None) -> AttributeBinding | None:
        if sub_field_name not in self.bindings:
            names = [_scim_name(self.model, self.field_name)]
            if sub_field_name is not None and self.entry_model is not None:
                names.append(_scim_name(self.entry_model, sub_field_name))
            self.bindings[sub_field_name] = Path(".".join(names)).resolve(self.model)
        return self.bindings[sub_field_name]


def _scim_name(model: type[BaseModel], field_name: str) -> str:
    return model.model_fields[field_name].serialization_alias or field_name


def _merged(group: list[PatchOperation[Any]], model: type[Any], field_name: str) -> PatchOperation[Any]:
    same = SameValue(model, field_name)
    seen: set[Any] = set()
    merged: list[Any] = []
    for operation in group:
        entries = _entries(operation.value) or []
        keys = [same.key(same.entry(entry)) for entry in entries]
        merged += [entry for entry, key in zip(entries, keys, strict=True) if key not in seen]
        seen.update(keys)
    return group[0].model_copy(update={"value": merged})


def coalesce(patch_op: PatchOp[Any], model: type[Any]) -> PatchOp[Any]:
    """The same PatchOp with runs of ``add`` operations on one multi-valued attribute merged (see above)."""
    operations = list(patch_op.operations or [])
    result: list[PatchOperation[Any]] = []
    index = 0
    while index < len(operations):
        field_name = _mergeable_field(operations[index], model)
        end = index + 1
        while field_name is not None and end < len(operations):
            if _mergeable_field(operations[end], model) != field_name:
                break
            end += 1
        group = operations[index:end]
        if field_name is None or len(group) == 1:
            result += group
        else:
            try:
                result.append(_merged(group, model, field_name))
            except (TypeError, ValueError):  # an entry the library would refuse: let it refuse it
                result += group
        index = end
    if len(result) == len(operations):
        return patch_op
    return patch_op.model_copy(update={"operations": result})


def _removed_value(operation: PatchOperation[Any], model: type[Any]) -> tuple[str, str] | None:
    """``(field, value)`` of a ``remove attr[value eq "value"]`` on a multi-valued attribute, else None."""
    node = operation.path.ast if operation.path is not None else None
    if (
        operation.op != PatchOperation.Op.remove
        or operation.value is not None
        or not isinstance(node, ValuePath)
        or node.sub_attr is not None
        or node.attr_path.sub_attr is not None
        or not isinstance(node.val_filter, Comparison)
        or node.val_filter.op is not CompareOperator.eq
        or node.val_filter.attr_path != AttrPath(attr="value")
        or not isinstance(node.val_filter.value, str)
    ):
        return None
    binding = operation.path.resolve() if operation.path is not None else None
    if binding is None or binding.model is not model or not binding.is_multivalued:
        return None
    entry_type: Any = binding.field_type
    if binding.field_name in EXEMPT or "value" not in getattr(entry_type, "model_fields", {}):
        return None
    return str(binding.field_name), node.val_filter.value


def _removal(
    patch_op: PatchOp[Any], resource: Any, field_name: str, values: list[str]
) -> PatchOp[Any] | None:
    """One operation with the effect of removing each ``field[value eq v]`` in turn, or None: no change."""
    same = SameValue(type(resource), field_name)
    gone = {same.string_key("value", value) for value in values}
    current = getattr(resource, field_name) or []
    kept = [
        entry
        for entry in current
        if not isinstance(entry.value, str) or same.string_key("value", entry.value) not in gone
    ]
    if len(kept) == len(current):
        return None
    name = _scim_name(type(resource), field_name)
    operation: dict[str, Any] = {"op": "remove", "path": name}
    if kept:
        dumped = [entry.model_dump(mode="json", by_alias=True, exclude_none=True) for entry in kept]
        operation = {"op": "replace", "path": name, "value": dumped}
    return type(patch_op).model_validate({"schemas": patch_op.schemas, "Operations": [operation]})


def apply_linear(patch_op: PatchOp[Any], resource: Any) -> bool:
    """Apply ``patch_op`` to ``resource`` in place, with the runs described above done in one pass each.

    On an error the resource may be half patched: the caller discards it (nothing was stored).
    """
    model = type(resource)
    operations = list(coalesce(patch_op, model).operations or [])
    changed = False
    pending: list[PatchOperation[Any]] = []

    def flush() -> None:
        nonlocal changed, pending
        if pending:
            changed = patch_op.model_copy(update={"operations": pending}).patch(resource) or changed
            pending = []

    index = 0
    while index < len(operations):
        first = _removed_value(operations[index], model)
        end = index + 1
        while first is not None and end < len(operations):
            following = _removed_value(operations[end], model)
            if following is None or following[0] != first[0]:
                break
            end += 1
        if first is None or end - index == 1:
            pending += operations[index:end]
        else:
            flush()
            values = [cast(tuple[str, str], _removed_value(op, model))[1] for op in operations[index:end]]
            removal = _removal(patch_op, resource, first[0], values)
            if removal is not None:
                changed = removal.patch(resource) or changed
        index = end
    flush()
    return changed
