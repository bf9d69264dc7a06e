"""Tolerance of SCIM clients that do not follow RFC 7643/7644 to the letter: the mechanism, per source.

Most deviations are already absorbed by scim2-models' tolerant ``ScimPolicy`` (case-insensitive ``op``,
``"False"`` strings, path-less replace with dotted keys, remove-with-value, ``$ref: null``). What is left is
normalised here, before validation, as switched on by the :class:`Quirks` of the source: ``fill_schemas``
(``"schemas": []``), ``string_emails`` (``emails`` as plain strings), ``default_active`` (a created user
without ``active`` is active), ``strip_domain`` (a ``DOMAIN/`` user-store prefix on ``userName``),
``drop_unknown_schemas``, ``unquoted_filters`` (``userName Eq x``), ``partial_put`` (PUT bodies that carry
only the changed attributes), ``raw_token`` (``Authorization: <token>`` without a scheme) and
``group_patch_no_content`` (group PATCH answered 204).

Which IdP needs which is said in its home, ``app.idp.<kind>`` (:mod:`app.idp.registry`): this module
never looks at a source's kind. Every source kind, ``generic`` included, refuses a second Group with the
same ``displayName`` in the source, compared case-insensitively (409 ``uniqueness``): role attributes
derive from group names, so two groups of one name are ambiguous (``unique_group_names``).
Source options override the defaults of the kind: ``partial_put``,
``raw_token``, ``group_patch_no_content``, ``unique_group_names``.
Every normaliser is idempotent: it may run twice on the same payload (partial PUT merges, then validates).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from typing import Any

from scim2_models import InvalidPathException, Path, ScimFilter
from scim2_models.path import AttrPath, CompareOperator, ValuePath

from app.config import ConfigError, SourceConfig

__all__ = ["Quirks", "QuirksFor", "with_options"]

_STRING_LISTS = ("emails", "phoneNumbers")
_DOMAIN_PREFIX = re.compile(r"^[A-Z0-9_.-]+/(?=.)")
# ``unquoted_filters`` reads what the SCIM grammar does not (``userName Eq alice``), so scim2-models cannot
# parse it whole: this pattern only finds an operator of scim2-models' in each ``and`` term; the text before
# it must parse as an attribute path by scim2-models' ``Path`` (the one grammar, RFC 7644 §3.5.2). The value
# is quoted as scim2-models quotes it, and the rewritten filter is parsed by scim2-models like any other.
_OPERATOR = re.compile(rf"\s+({'|'.join(op.value for op in CompareOperator)})\s+", re.IGNORECASE)
_AND = re.compile(r"\s+and\s+", re.IGNORECASE)
_LITERALS = {"true", "false", "null"}


@dataclass(frozen=True)
class Quirks:
    """What one source's SCIM client needs; the default (``generic``) only keeps group names unique."""

    kind: str = "generic"
    fill_schemas: bool = False
    string_emails: bool = False
    default_active: bool = False
    strip_domain: bool = False
    drop_unknown_schemas: bool = False
    unquoted_filters: bool = False
    partial_put: bool = False
    raw_token: bool = False
    group_patch_no_content: bool = False
    unique_group_names: bool = True

    # -- resources (POST / PUT bodies) --------------------------------------------------------

    def resource(
        self, payload: Any, core_schema: str, known_schemas: Collection[str], *, creating: bool = False
    ) -> Any:
        """Normalise a User or Group body before validation (``creating``: the body of a POST)."""
        if not isinstance(payload, dict):
            return payload
        result = dict(payload)
        is_user = core_schema.endswith(":User")
        if self.default_active and creating and is_user and _key(result, "active") is None:
            result["active"] = True
        schemas_key = _key(result, "schemas")
        if self.fill_schemas and (schemas_key is None or result[schemas_key] in ([], None)):
            result[schemas_key or "schemas"] = [core_schema]
        if self.drop_unknown_schemas and schemas_key is not None and isinstance(result[schemas_key], list):
            known = {schema.lower() for schema in known_schemas}
            kept = [s for s in result[schemas_key] if not isinstance(s, str) or s.lower() in known]
            result[schemas_key] = kept or [core_schema]
        if self.string_emails:
            for name in _STRING_LISTS:
                key = _key(result, name)
                if key is not None:
                    result[key] = _complex_values(result[key])
        if self.strip_domain:
            key = _key(result, "userName")
            if key is not None and isinstance(result[key], str):
                result[key] = _DOMAIN_PREFIX.sub("", result[key])
        return result

    def patch(self, payload: Any) -> Any:
        """Normalise a PatchOp body: the same value fixes, applied to each operation's value."""
        if not isinstance(payload, dict) or not (self.string_emails or self.strip_domain):
            return payload
        operations_key = _key(payload, "Operations")
        if operations_key is None or not isinstance(payload[operations_key], list):
            return payload
        operations = []
        for operation in payload[operations_key]:
            if isinstance(operation, dict):
                operation = dict(operation)
                path = operation.get("path")
                value = operation.get("value")
                if isinstance(path, str) and path.lower() in {n.lower() for n in _STRING_LISTS}:
                    operation["value"] = _complex_values(value)
                elif isinstance(path, str) and path.lower() == "username" and isinstance(value, str):
                    operation["value"] = _DOMAIN_PREFIX.sub("", value) if self.strip_domain else value
                elif path is None and isinstance(value, dict):
                    operation["value"] = self.resource(value, "", ())
            operations.append(operation)
        return {**payload, operations_key: operations}

    # -- queries ------------------------------------------------------------------------------

    def filter(self, text: str) -> str:
        """Quote the unquoted values of simple comparisons (``userName Eq alice@example.com``)."""
        if not self.unquoted_filters or '"' in text or "(" in text:
            return text
        quoted = []
        for part in _AND.split(text):
            comparison = _comparison(part)
            if comparison is None:
                return text
            attr, op, value = comparison
            if value.lower() not in _LITERALS:
                if self.strip_domain and attr.lower() == "username":
                    value = _DOMAIN_PREFIX.sub("", value)
                value = ScimFilter.quote(value)
            quoted.append(f"{attr} {op} {value}")
        return " and ".join(quoted)


def _comparison(term: str) -> tuple[str, str, str] | None:
    """``(attribute path, operator, value)`` of ``attr op value``: the first operator whose left side is an
    attribute path (``emails[primary eq true].value eq x`` skips the ``eq`` inside the brackets)."""
    for match in _OPERATOR.finditer(term):
        attr, value = term[: match.start()].strip(), term[match.end() :].strip()
        try:
            node = Path(attr).ast
        except InvalidPathException:
            continue
        if isinstance(node, AttrPath | ValuePath) and value:
            return attr, match[1], value
    return None


QuirksFor = Callable[[SourceConfig], Quirks]
"""A source's quirks: its IdP's defaults with its options (:func:`app.idp.registry.quirks_for`)."""


def _key(mapping: dict[str, Any], name: str) -> str | None:
    """The key of ``mapping`` that names ``name``, compared case-insensitively (RFC 7643 §2.1)."""
    return next((key for key in mapping if key.lower() == name.lower()), None)


def _complex_values(value: Any) -> Any:
    """``["a@x", "b@x"]`` → ``[{"value": "a@x", "primary": true}, {"value": "b@x"}]`` (first one primary)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return value
    has_primary = any(
        isinstance(item, dict) and item.get("primary") in (True, "true", "True") for item in value
    )
    result: list[Any] = []
    for item in value:
        if isinstance(item, str):
            entry: dict[str, Any] = {"value": item}
            if not has_primary:
                entry["primary"] = True
                has_primary = True
            result.append(entry)
        else:
            result.append(item)
    return result


_OVERRIDABLE = ("partial_put", "raw_token", "group_patch_no_content", "unique_group_names")


def with_options(quirks: Quirks, source: SourceConfig) -> Quirks:
    """``quirks`` (the defaults of the source's IdP, :mod:`app.idp.registry`) with the source's overrides."""
    overrides: dict[str, Any] = {}
    for option in _OVERRIDABLE:
        if option in source.options:
            value = source.options[option]
            if not isinstance(value, bool):
                raise ConfigError(f"sources.{source.name}.{option} must be true or false")
            overrides[option] = value
    return replace(quirks, **overrides) if overrides else quirks
