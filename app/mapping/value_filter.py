"""SCIM filter expressions as used inside value paths (RFC 7644 §3.4.2.2, §3.5.2 ``valFilter``).

Supported: ``eq ne co sw ew gt ge lt le pr``, ``and``, ``or``, ``not (...)`` and parentheses, with the RFC's
precedence (``not`` > ``and`` > ``or``). Operators and keywords are case-insensitive (WSO2 sends ``Eq``).
Values must be JSON literals: a double-quoted string, ``true``, ``false``, ``null`` or a number.

Comparison rules (documented choices where the RFC defers to the schema):
- Strings compare case-insensitively: every attribute a mapping is likely to filter on (``type``,
  ``primary``, ``value``, ``display``) is ``caseExact: false`` in RFC 7643 §4.1.2 / §8.7.1.
- ``true``/``false`` also match the strings ``"True"``/``"false"`` (any case), because Entra ID sends
  booleans as strings (``"False"``) unless the tenant URL carries ``aadOptscim062020``.
- ``pr`` is true for a value that is not null, not ``""`` and not an empty list or object.
- ``ne`` is the negation of ``eq``, so it matches an absent attribute.
- Against a multi-valued attribute, a comparison matches when any element matches.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass

from app.mapping.errors import PathSyntaxError

Scalar = str | int | float | bool | None

COMPARE_OPS = frozenset({"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"})
_STRING_OPS = frozenset({"co", "sw", "ew"})
_ORDER_OPS = frozenset({"gt", "ge", "lt", "le"})
_ATTR_RE = re.compile(r"^[A-Za-z$][A-Za-z0-9_$-]*(\.[A-Za-z$][A-Za-z0-9_$-]*)*$")
_NUMBER_RE = re.compile(r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$")


@dataclass(frozen=True)
class Compare:
    """``attr op value``; for ``pr`` the value is unused (None)."""

    attr: str
    op: str
    value: Scalar = None


@dataclass(frozen=True)
class And:
    left: Filter
    right: Filter


@dataclass(frozen=True)
class Or:
    left: Filter
    right: Filter


@dataclass(frozen=True)
class Not:
    inner: Filter


Filter = Compare | And | Or | Not


@dataclass(frozen=True)
class _Token:
    kind: str  # "(", ")", "str", "word"
    text: str
    pos: int
    value: Scalar = None


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    decoder = json.JSONDecoder()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "()":
            tokens.append(_Token(ch, ch, i))
            i += 1
        elif ch == '"':
            try:
                value, end = decoder.raw_decode(text, i)
            except json.JSONDecodeError as exc:
                raise PathSyntaxError(text, i, "unterminated or invalid string") from exc
            tokens.append(_Token("str", text[i:end], i, value))
            i = end
        else:
            start = i
            while i < len(text) and not text[i].isspace() and text[i] not in '()"':
                i += 1
            tokens.append(_Token("word", text[start:i], start))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    def _peek(self) -> _Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _next(self, expected: str) -> _Token:
        tok = self._peek()
        if tok is None:
            raise PathSyntaxError(self.text, len(self.text), f"expected {expected}, found end of filter")
        self.i += 1
        return tok

    def _is_keyword(self, word: str) -> bool:
        tok = self._peek()
        return tok is not None and tok.kind == "word" and tok.text.casefold() == word

    def parse(self) -> Filter:
        if not self.tokens:
            raise PathSyntaxError(self.text, 0, "empty filter")
        result = self._or()
        tok = self._peek()
        if tok is not None:
            raise PathSyntaxError(self.text, tok.pos, f"unexpected {tok.text!r}")
        return result

    def _or(self) -> Filter:
        left = self._and()
        while self._is_keyword("or"):
            self.i += 1
            left = Or(left, self._and())
        return left

    def _and(self) -> Filter:
        left = self._unary()
        while self._is_keyword("and"):
            self.i += 1
            left = And(left, self._unary())
        return left

    def _unary(self) -> Filter:
        if self._is_keyword("not"):
            self.i += 1
            return Not(self._group())
        tok = self._peek()
        if tok is not None and tok.kind == "(":
            return self._group()
        return self._comparison()

    def _group(self) -> Filter:
        tok = self._next("'('")
        if tok.kind != "(":
            raise PathSyntaxError(self.text, tok.pos, "expected '('")
        inner = self._or()
        tok = self._next("')'")
        if tok.kind != ")":
            raise PathSyntaxError(self.text, tok.pos, "expected ')'")
        return inner

    def _comparison(self) -> Filter:
        attr = self._next("an attribute name")
        if attr.kind != "word" or not _ATTR_RE.match(attr.text):
            raise PathSyntaxError(self.text, attr.pos, f"expected an attribute name, found {attr.text!r}")
        op_tok = self._next("an operator")
        op = op_tok.text.casefold()
        if op_tok.kind != "word" or (op != "pr" and op not in COMPARE_OPS):
            raise PathSyntaxError(self.text, op_tok.pos, f"unknown operator {op_tok.text!r}")
        if op == "pr":
            return Compare(attr.text, "pr")
        value = self._value()
        if op in _STRING_OPS and not isinstance(value, str):
            raise PathSyntaxError(self.text, op_tok.pos, f"{op} needs a string value")
        if op in _ORDER_OPS and (value is None or isinstance(value, bool)):
            raise PathSyntaxError(self.text, op_tok.pos, f"{op} needs a string or number value")
        return Compare(attr.text, op, value)

    def _value(self) -> Scalar:
        tok = self._next("a value")
        if tok.kind == "str":
            return tok.value
        if tok.kind == "word":
            word = tok.text
            if word.casefold() in ("true", "false"):
                return word.casefold() == "true"
            if word.casefold() == "null":
                return None
            if _NUMBER_RE.match(word):
                return float(word) if any(c in word for c in ".eE") else int(word)
        raise PathSyntaxError(
            self.text, tok.pos, f"expected a JSON value (quote strings), found {tok.text!r}"
        )


def parse_filter(text: str) -> Filter:
    """Parse a filter; raises `PathSyntaxError` with the offending position."""
    return _Parser(text).parse()


def ci_get(obj: Mapping[str, object], name: str) -> object:
    """Attribute lookup ignoring case (RFC 7643 §2.1); an exact-case key wins. Absent → None."""
    if name in obj:
        return obj[name]
    folded = name.casefold()
    for key, value in obj.items():
        if isinstance(key, str) and key.casefold() == folded:
            return value
    return None


def _lookup(element: Mapping[str, object], dotted: str) -> object:
    node: object = element
    for part in dotted.split("."):
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


def _eq(actual: object, expected: Scalar) -> bool:
    if expected is None:
        return actual is None
    if isinstance(expected, bool):
        if isinstance(actual, bool):
            return actual is expected
        return isinstance(actual, str) and actual.strip().casefold() == ("true" if expected else "false")
    if isinstance(expected, int | float):
        return isinstance(actual, int | float) and not isinstance(actual, bool) and actual == expected
    if isinstance(actual, str):
        return actual.casefold() == expected.casefold()
    if isinstance(actual, bool):
        return expected.strip().casefold() == ("true" if actual else "false")
    return False


_ORDER_FUNCS = {"gt": operator.gt, "ge": operator.ge, "lt": operator.lt, "le": operator.le}


def _order(actual: object, op: str, expected: Scalar) -> bool:
    compare = _ORDER_FUNCS[op]
    if isinstance(expected, str) and isinstance(actual, str):
        return bool(compare(actual.casefold(), expected.casefold()))
    numbers = (int, float)
    if isinstance(expected, numbers) and isinstance(actual, numbers) and not isinstance(actual, bool):
        return bool(compare(float(actual), float(expected)))
    return False


def _compare_one(actual: object, op: str, expected: Scalar) -> bool:
    if op == "eq":
        return _eq(actual, expected)
    if op in _STRING_OPS:
        if not isinstance(actual, str) or not isinstance(expected, str):
            return False
        a, e = actual.casefold(), expected.casefold()
        return e in a if op == "co" else a.startswith(e) if op == "sw" else a.endswith(e)
    return _order(actual, op, expected)


def matches(flt: Filter, element: Mapping[str, object]) -> bool:
    """Evaluate ``flt`` against one complex value."""
    if isinstance(flt, And):
        return matches(flt.left, element) and matches(flt.right, element)
    if isinstance(flt, Or):
        return matches(flt.left, element) or matches(flt.right, element)
    if isinstance(flt, Not):
        return not matches(flt.inner, element)
    actual = _lookup(element, flt.attr)
    if flt.op == "pr":
        return _present(actual)
    if flt.op == "ne":
        return not matches(Compare(flt.attr, "eq", flt.value), element)
    candidates = actual if isinstance(actual, list) else [actual]
    return any(_compare_one(candidate, flt.op, flt.value) for candidate in candidates)


def is_primary_true(flt: Filter) -> bool:
    """True for exactly ``primary eq true`` (the filter that gets the first-element fallback)."""
    if not isinstance(flt, Compare):
        return False
    return flt.attr.casefold() == "primary" and flt.op == "eq" and flt.value is True
