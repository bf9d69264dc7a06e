"""Our evaluation of SCIM value filters (RFC 7644 §3.4.2.2, §3.5.2 ``valFilter``) on plain dicts.

Parsing is scim2-models' (:mod:`app.mapping.scim_path` hands over the ``val_filter`` of its
``ValuePath``): ``eq ne co sw ew gt ge lt le pr``, ``and``, ``or``, ``not (...)`` and parentheses with the
RFC's precedence, keywords case-insensitive (WSO2 sends ``Eq``), values JSON literals. scim2-models'
own ``ScimFilter.match`` evaluates a filter on a validated resource model; the mapping reads the raw
request body, which holds what no model declares (Entra's ``"True"`` strings, Asgardeo's plain-string
``emails``), so the evaluation stays ours. Comparison rules (documented choices where the RFC defers to
the schema):

- Strings compare case-insensitively: every attribute a mapping is likely to filter on (``type``,
  ``primary``, ``value``, ``display``) is ``caseExact: false`` in RFC 7643 §4.1.2 / §8.7.1.
- ``true``/``false`` also match the strings ``"True"``/``"false"`` (any case), because Entra ID sends
  booleans as strings (``"False"``) unless the tenant URL carries ``aadOptscim062020``; likewise
  ``primary eq "True"`` matches a boolean ``true``.
- ``pr`` is true for a value that is not null, not ``""`` and not an empty list or object.
- ``ne`` is the negation of ``eq``, so it matches an absent attribute.
- Against a multi-valued attribute, a comparison matches when any element matches.

:func:`filter_problem` refuses, at configuration time, what the grammar reads but cannot match anything:
``co``/``sw``/``ew`` with a non-string value, an ordering operator with ``true``/``false``/``null``, and a
schema URN before a sub-attribute inside the brackets.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Mapping

from scim2_models.path import (
    ORDERING_OPERATORS,
    STRING_OPERATORS,
    AttrPath,
    CompareOperator,
    Comparison,
    FilterNode,
    LogicalExpr,
    LogicalOperator,
    Not,
    Present,
)


def filter_problem(flt: FilterNode) -> str | None:
    """Why ``flt`` (the inside of ``[...]``) can match nothing, or None when it is fine."""
    if isinstance(flt, Not):
        return filter_problem(flt.expr)
    if isinstance(flt, LogicalExpr):
        return next((p for p in map(filter_problem, flt.terms) if p is not None), None)
    if not isinstance(flt, Comparison | Present):
        return f"{flt} cannot stand inside a value filter"
    if flt.attr_path.uri is not None:
        return f"a value filter names sub-attributes, not {str(flt.attr_path)!r}"
    if not isinstance(flt, Comparison):
        return None
    if flt.op in STRING_OPERATORS and not isinstance(flt.value, str):
        return f"{flt.op.value} compares strings, not {json.dumps(flt.value)}"
    if flt.op in ORDERING_OPERATORS and (flt.value is None or isinstance(flt.value, bool)):
        return f"{flt.op.value} compares strings or numbers, not {json.dumps(flt.value)}"
    return None


def ci_get(obj: Mapping[str, object], name: str) -> object:
    """Attribute lookup ignoring case (RFC 7643 §2.1); an exact-case key wins. Absent → None."""
    if name in obj:
        return obj[name]
    folded = name.casefold()
    for key, value in obj.items():
        if isinstance(key, str) and key.casefold() == folded:
            return value
    return None


def _lookup(element: Mapping[str, object], attr_path: AttrPath) -> object:
    node: object = element
    for part in (attr_path.attr, attr_path.sub_attr):
        if part is None:
            break
        if not isinstance(node, Mapping):
            return None
        node = ci_get(node, part)
    return node


def _present(actual: object) -> bool:
    if actual is None or actual == "":
        return False
    if isinstance(actual, list | dict):
        return len(actual) > 0
    return True


def _eq(actual: object, expected: object) -> bool:
    if expected is None:
        return actual is None
    if isinstance(expected, bool):
        if isinstance(actual, bool):
            return actual is expected
        return isinstance(actual, str) and actual.strip().casefold() == ("true" if expected else "false")
    if isinstance(expected, int | float):
        return isinstance(actual, int | float) and not isinstance(actual, bool) and actual == expected
    if not isinstance(expected, str):
        return False
    if isinstance(actual, str):
        return actual.casefold() == expected.casefold()
    if isinstance(actual, bool):
        return expected.strip().casefold() == ("true" if actual else "false")
    return False


_ORDER_FUNCS = {
    CompareOperator.gt: operator.gt,
    CompareOperator.ge: operator.ge,
    CompareOperator.lt: operator.lt,
    CompareOperator.le: operator.le,
}


def _order(actual: object, op: CompareOperator, expected: object) -> bool:
    compare = _ORDER_FUNCS[op]
    if isinstance(expected, str) and isinstance(actual, str):
        return bool(compare(actual.casefold(), expected.casefold()))
    numbers = (int, float)
    if isinstance(expected, numbers) and isinstance(actual, numbers) and not isinstance(actual, bool):
        return bool(compare(float(actual), float(expected)))
    return False


def _compare_one(actual: object, op: CompareOperator, expected: object) -> bool:
    if op is CompareOperator.eq:
        return _eq(actual, expected)
    if op in STRING_OPERATORS:
        if not isinstance(actual, str) or not isinstance(expected, str):
            return False
        a, e = actual.casefold(), expected.casefold()
        if op is CompareOperator.co:
            return e in a
        return a.startswith(e) if op is CompareOperator.sw else a.endswith(e)
    return _order(actual, op, expected)


def matches(flt: FilterNode, element: Mapping[str, object]) -> bool:
    """Evaluate ``flt`` against one complex value."""
    if isinstance(flt, LogicalExpr):
        combine = all if flt.op is LogicalOperator.and_ else any
        return combine(matches(term, element) for term in flt.terms)
    if isinstance(flt, Not):
        return not matches(flt.expr, element)
    if isinstance(flt, Present):
        return _present(_lookup(element, flt.attr_path))
    if not isinstance(flt, Comparison):
        return False  # a nested value path: refused by the grammar inside brackets (RFC 7644 errata 5607)
    if flt.op is CompareOperator.ne:
        return not matches(Comparison(flt.attr_path, CompareOperator.eq, flt.value), element)
    actual = _lookup(element, flt.attr_path)
    candidates = actual if isinstance(actual, list) else [actual]
    return any(_compare_one(candidate, flt.op, flt.value) for candidate in candidates)


def is_primary_true(flt: FilterNode) -> bool:
    """True for exactly ``primary eq true`` (the filter that gets the first-element fallback)."""
    if not isinstance(flt, Comparison) or flt.attr_path.sub_attr is not None:
        return False
    return flt.attr_path.attr.casefold() == "primary" and flt.op is CompareOperator.eq and flt.value is True
