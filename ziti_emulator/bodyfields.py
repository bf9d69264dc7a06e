"""Typed access to request-body fields with the controller's error answers.

The emulator validates against the real spec when one is loaded (see ``spec.py``); these checks are the
built-in fallback so that required fields, enums and JSON types are enforced even without a spec, with the
same go-openapi / Go ``encoding/json`` wording (``docs/controller-api.md`` §1 "Codes").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .errors import ApiError, could_not_parse_body, field_error, unhandled

JSON = dict[str, Any]

_GO = {str: "string", bool: "bool", int: "int64", list: "[]string", dict: "map[string]interface {}"}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


class Body:
    """A decoded JSON object body plus the names used in error messages."""

    def __init__(self, data: Any, param: str, model: str) -> None:
        self.param = param
        self.model = model
        if not isinstance(data, dict):
            raise could_not_parse_body(
                f'parsing {param} body from "" failed, because json: cannot unmarshal '
                f"{_json_type(data)} into Go value of type rest_model.{model}"
            )
        self.data: JSON = data

    def has(self, name: str) -> bool:
        return name in self.data

    def _type_error(self, name: str, value: Any, go_type: str) -> ApiError:
        return could_not_parse_body(
            f'parsing {self.param} body from "" failed, because json: cannot unmarshal {_json_type(value)} '
            f"into Go struct field {self.model}.{name} of type {go_type}"
        )

    def _get(self, name: str, typ: type, required: bool) -> Any:
        value = self.data.get(name)
        if value is None:
            if required:
                raise field_error(name, f"{name} in body is required", None)
            return None
        ok = isinstance(value, typ) and not (typ is int and isinstance(value, bool))
        if not ok:
            raise self._type_error(name, value, _GO[typ])
        return value

    def str_(self, name: str, *, required: bool = False) -> str | None:
        value: str | None = self._get(name, str, required)
        return value

    def bool_(self, name: str, *, required: bool = False) -> bool | None:
        value: bool | None = self._get(name, bool, required)
        return value

    def int_(self, name: str, *, required: bool = False) -> int | None:
        value: int | None = self._get(name, int, required)
        return value

    def map_(self, name: str) -> JSON | None:
        value: JSON | None = self._get(name, dict, False)
        return value

    def str_list(self, name: str) -> list[str] | None:
        value: list[Any] | None = self._get(name, list, False)
        if value is None:
            return None
        for item in value:
            if not isinstance(item, str):
                raise self._type_error(name, item, "string")
        return list(value)

    def enum(self, name: str, allowed: Sequence[str], *, required: bool = False) -> str | None:
        value = self.str_(name, required=required)
        if value is not None and value not in allowed:
            raise field_error(name, f"{name} in body should be one of {_go_list(allowed)}", value)
        return value


def _go_list(values: Sequence[str]) -> str:
    return "[" + " ".join(values) + "]"


def check_flat_tags(tags: JSON, store: str) -> None:
    """controller-api.md §1 "Tags": nested maps or lists make the store fail, surfacing as 500 UNHANDLED."""
    for key, value in tags.items():
        if isinstance(value, dict | list):
            raise unhandled(
                f"error persisting tags on {store}: value for tag '{key}' must not be a map or list"
            )


def updated_fields(data: JSON, *, empty_map_counts: bool) -> set[str]:
    """Top-level keys a PATCH changes.

    ``controller/api/json_fields.go GetJsonFields``: ``null`` values are skipped (null means "leave
    unchanged"), maps are walked into (so ``{"tags": {"a": null}}`` changes nothing); an empty map counts only
    since 1.8 (``empty_map_counts``; 1.6 recursed into it and found no field). ``fields.go FilterMaps``
    then turns ``tags.x`` back into ``tags``, so a map that is sent replaces the stored one.
    """

    def has_leaf(value: Any) -> bool:
        if isinstance(value, dict):
            if not value:
                return empty_map_counts
            return any(has_leaf(v) for v in value.values())
        return value is not None

    return {key for key, value in data.items() if has_leaf(value)}
