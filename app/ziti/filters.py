"""Builders for ZitiQL filter expressions (the ``filter`` query parameter of list endpoints).

Grammar: openziti/storage ``zitiql/ZitiQl.g4`` (controller-api.md §3.2):

* ``STRING: '"' (ESC | SAFECODEPOINT)* '"'`` with ``ESC: '\\' ["\\fnrt]`` and ``SAFECODEPOINT`` any code point
  except ``"``, ``\\`` and U+0000..U+001F. So ``"`` and ``\\`` must be escaped, the five control characters
  with an escape are written as ``\\f \\n \\r \\t``, and every other control character cannot be expressed
  at all (:class:`ValueError`).
* ``IDENTIFIER``: ``[A-Za-z][A-Za-z_]*`` segments separated by ``.`` (later segments may also contain
  ``-`` per the research notes). Digits are not allowed, so a tag key like ``scim2`` cannot be filtered on.

Comparisons are exact and case-sensitive on the controller, but the controller decodes string literals
wrongly (``storage/zitiql/util.go ParseZqlString`` turns ``\\\\`` into ``\\`` before expanding ``\\t``
etc.), so a value with a backslash cannot be matched exactly: :func:`survives_controller` tells, and
:func:`filter_safe_fragment` gives a piece to search with ``contains`` before checking the result exactly.
"""

from __future__ import annotations

import re

__all__ = [
    "ziti_quote",
    "ziti_identifier",
    "ziti_filter_eq",
    "ziti_filter_tag_eq",
    "ziti_filter_and",
    "ziti_filter_contains",
    "controller_decode",
    "survives_controller",
    "filter_safe_fragment",
]

_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z_]*(?:\.[A-Za-z][A-Za-z_\-]*)*")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}

FilterValue = str | bool | int | None


def ziti_quote(value: str) -> str:
    """Return ``value`` as a double-quoted ZitiQL string literal.

    Raises :class:`ValueError` for control characters the grammar cannot express.
    """
    out: list[str] = ['"']
    for ch in value:
        escaped = _ESCAPES.get(ch)
        if escaped is not None:
            out.append(escaped)
        elif ord(ch) < 0x20:
            raise ValueError(f"control character U+{ord(ch):04X} cannot appear in a Ziti filter string")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def ziti_identifier(field: str) -> str:
    """Validate a ZitiQL field name (e.g. ``externalId``, ``tags.scimId``) and return it unchanged."""
    if not _IDENTIFIER.fullmatch(field):
        raise ValueError(
            f"{field!r} is not a valid Ziti filter field: use letters and '_' in dot-separated segments"
        )
    return field


def _literal(value: FilterValue) -> str:
    # bool before int: bool is a subclass of int.
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return ziti_quote(value)
    raise TypeError(f"unsupported Ziti filter value type {type(value).__name__}")


def ziti_filter_eq(field: str, value: FilterValue) -> str:
    """``field = value``; strings quoted and escaped, ``None`` as ``null``, bools as ``true``/``false``."""
    return f"{ziti_identifier(field)} = {_literal(value)}"


def ziti_filter_in(field: str, values: list[str]) -> str:
    """``field in ["a", "b"]`` (ZitiQl.g4 ``IN`` with a string array); at least one value."""
    if not values:
        raise ValueError("ziti_filter_in needs at least one value")
    return f"{ziti_identifier(field)} in [{', '.join(ziti_quote(v) for v in values)}]"


def ziti_filter_tag_eq(key: str, value: FilterValue) -> str:
    """``tags.<key> = value``; ``key`` must be a single identifier segment (no ``.``)."""
    if "." in key:
        raise ValueError(f"tag key {key!r} must not contain '.'")
    return ziti_filter_eq(f"tags.{key}", value)


def ziti_filter_and(*clauses: str) -> str:
    """Join non-empty clauses with ``and``, each parenthesised so ``or`` inside one stays local."""
    parts = [c for c in clauses if c]
    if not parts:
        raise ValueError("ziti_filter_and needs at least one clause")
    if len(parts) == 1:
        return parts[0]
    return " and ".join(f"({c})" for c in parts)


def ziti_filter_contains(field: str, value: str) -> str:
    """``field contains "value"`` (case-sensitive substring)."""
    return f"{ziti_identifier(field)} contains {ziti_quote(value)}"


def controller_decode(literal_body: str) -> str:
    """What the controller compares for a string literal's body (``zitiql/util.go ParseZqlString``)."""
    t = literal_body.replace("\\\\", "\\")
    for seq, char in (('\\"', '"'), ("\\f", "\f"), ("\\n", "\n"), ("\\r", "\r"), ("\\t", "\t")):
        t = t.replace(seq, char)
    return t.replace("\\\\", "\\")


def survives_controller(value: str) -> bool:
    """True when ``field = <ziti_quote(value)>`` matches ``value`` on a real controller."""
    try:
        literal = ziti_quote(value)
    except ValueError:
        return False
    return controller_decode(literal[1:-1]) == value


def filter_safe_fragment(value: str) -> str:
    """The longest piece of ``value`` without backslashes or control characters ("" if there is none)."""
    pieces = re.split(r"[\\\x00-\x1f]+", value)
    return max(pieces, key=len) if pieces else ""
