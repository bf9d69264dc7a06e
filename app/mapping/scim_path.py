"""SCIM attribute paths evaluated on plain dicts (RFC 7644 §3.5.2 ``PATH``, RFC 7643 §2.1).

Forms accepted::

    userName                          name.givenName
    emails[type eq "work"].value      emails[primary eq true].value
    urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber
    urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value
    urn:openziti:scim:schemas:extension:ziti:2.0:User:roleAttributes

Names are case-insensitive (RFC 7643 §2.1). A schema URN prefix is split at the last ``:`` before any
``[`` (the rule Entra documents); the core User/Group URNs address the top level. Evaluation yields every
value the path reaches, flattening multi-valued attributes, so ``emails.value`` gives all addresses.

Leniencies, all documented because real clients need them:
- An element of a multi-valued attribute that is not an object (Asgardeo's ``"emails": ["a@x"]``, the ziti
  extension's ``roleAttributes``) is treated as ``{"value": element}``.
- Primary fallback: with ``primary_fallback=True``, a segment filtered by exactly ``[primary eq true]``
  whose elements are all unmarked selects the first element. RFC 7643 §2.4 allows at most one primary and
  none at all; "no primary" means "no preference", and the first element is what a human reads as the
  main address. Used by every preset.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from app.mapping.errors import PathSyntaxError
from app.mapping.value_filter import Filter, ci_get, is_primary_true, matches, parse_filter

CORE_SCHEMAS = frozenset(
    {
        "urn:ietf:params:scim:schemas:core:2.0:user",
        "urn:ietf:params:scim:schemas:core:2.0:group",
    }
)
_NAME_RE = re.compile(r"[A-Za-z$][A-Za-z0-9_$-]*")


@dataclass(frozen=True)
class Segment:
    name: str
    filter: Filter | None = None
    filter_text: str = ""


@dataclass(frozen=True)
class AttrPath:
    """A parsed path; ``text`` is the original spelling (used in error messages)."""

    text: str
    schema: str | None
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class Evaluation:
    values: tuple[object, ...]
    notes: tuple[str, ...] = ()


def _closing_bracket(text: str, start: int) -> int:
    """Index of the ``]`` closing the ``[`` at ``start``, skipping quoted strings."""
    i, quoted = start + 1, False
    while i < len(text):
        ch = text[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "]":
            return i
        i += 1
    raise PathSyntaxError(text, start, "unclosed '['")


def parse_path(text: str) -> AttrPath:
    """Parse ``text``; raises `PathSyntaxError`."""
    if not isinstance(text, str) or not text.strip():
        raise PathSyntaxError(str(text), 0, "empty attribute path")
    text = text.strip()
    schema: str | None = None
    offset = 0
    if text[:4].casefold() == "urn:":
        bracket = text.find("[")
        head = text if bracket < 0 else text[:bracket]
        colon = head.rfind(":")
        schema, offset = text[:colon], colon + 1
        if offset >= len(text):
            raise PathSyntaxError(text, offset, "schema URN without an attribute name")
    segments: list[Segment] = []
    i = offset
    while True:
        m = _NAME_RE.match(text, i)
        if m is None:
            raise PathSyntaxError(text, i, "expected an attribute name")
        name, i = m.group(0), m.end()
        flt: Filter | None = None
        flt_text = ""
        if i < len(text) and text[i] == "[":
            end = _closing_bracket(text, i)
            flt_text = text[i + 1 : end]
            try:
                flt = parse_filter(flt_text)
            except PathSyntaxError as exc:
                raise PathSyntaxError(text, i + 1 + exc.position, exc.detail) from exc
            i = end + 1
        segments.append(Segment(name, flt, flt_text))
        if i == len(text):
            break
        if text[i] != ".":
            raise PathSyntaxError(text, i, f"unexpected {text[i]!r}")
        i += 1
    return AttrPath(text, schema, tuple(segments))


def _as_complex(element: object) -> Mapping[str, object]:
    if isinstance(element, Mapping):
        return element
    return {"value": element}


def evaluate(path: AttrPath, resource: Mapping[str, object], *, primary_fallback: bool = False) -> Evaluation:
    """Every value ``path`` reaches in ``resource`` (empty when absent); never raises on odd input."""
    notes: list[str] = []
    base: object = resource
    if path.schema is not None and path.schema.casefold() not in CORE_SCHEMAS:
        base = ci_get(resource, path.schema)
        if not isinstance(base, Mapping):
            notes.append(f"extension {path.schema} is absent")
            return Evaluation((), tuple(notes))
    nodes: list[object] = [base]
    for seg in path.segments:
        found: list[object] = []
        for node in nodes:
            if isinstance(node, Mapping):
                child = ci_get(node, seg.name)
            elif seg.name.casefold() == "value":
                child = node  # a plain element of a multi-valued attribute is its own value
            else:
                child = None
            if child is None:
                continue
            items = [item for item in child if item is not None] if isinstance(child, list) else [child]
            if seg.filter is not None:
                selected = [item for item in items if matches(seg.filter, _as_complex(item))]
                if not selected and items and primary_fallback and is_primary_true(seg.filter):
                    selected = [items[0]]
                    notes.append(f"no element of {seg.name} is marked primary; used the first one")
                elif len(selected) > 1 and is_primary_true(seg.filter):
                    notes.append(f"{len(selected)} elements of {seg.name} are marked primary")
                items = selected
            found.extend(items)
        nodes = found
    return Evaluation(tuple(nodes), tuple(notes))


def scalar_text(value: object) -> str | None:
    """A value as text for identity fields: strings as-is, numbers in decimal, booleans as
    ``true``/``false``; a complex value stands for its ``value`` sub-attribute. Anything else → None."""
    if isinstance(value, Mapping):
        value = ci_get(value, "value")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return None
