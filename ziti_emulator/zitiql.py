"""A ZitiQL subset: the ``filter`` query parameter of the controller's list endpoints.

Implements ``docs/controller-api.md`` §3.2 (grammar of openziti/storage ``zitiql/ZitiQl.g4``):

* comparisons ``= != < <= > >=``, ``contains``/``icontains`` (optionally ``not``), ``in [..]``,
  ``between a and b``;
* values: double-quoted strings (escapes ``\\" \\\\ \\f \\n \\r \\t`` only, no control characters), numbers,
  ``true``/``false``/``null``, ``datetime(RFC3339)``;
* ``and``, ``or``, ``not``, parentheses; set functions ``anyOf(f)``, ``allOf(f)``, ``isEmpty(f)``,
  ``count(f)``;
* suffixes ``sort by f [asc|desc], ...``, ``skip N``, ``limit N|none``;
* identifiers ``[A-Za-z][A-Za-z_]*`` with ``.``-separated segments (later ones may contain ``-``), optionally
  in single quotes: no digits; a bare boolean field (``isAdmin``) is a predicate.

Unknown fields, set fields used as scalars and parse errors raise :class:`FilterError` (400 INVALID_FILTER).
Keywords are case-insensitive. Sub-queries (``from x where``) are not supported.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .ids import parse_time

E = TypeVar("E")

__all__ = ["FieldSet", "FilterError", "Query", "compile_predicate", "parse_query", "sort_entities"]


class FilterError(ValueError):
    """The filter does not parse or refers to an unknown field."""


@dataclass(frozen=True)
class _Tok:
    kind: str  # str, num, dt, ident, op, punct
    value: Any
    pos: int


_IDENT = re.compile(r"[A-Za-z][A-Za-z_]*(?:\.[A-Za-z_\-]+)*")
_QUOTED_IDENT = re.compile(r"'([A-Za-z][A-Za-z_]*(?:\.[A-Za-z_\-]+)*)'")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_DATETIME = re.compile(r"datetime\(\s*([^)]*?)\s*\)", re.IGNORECASE)
_OPS = ("!=", "<=", ">=", "=", "<", ">")
_ESC = {'"': '"', "\\": "\\", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def parse_zql_string(raw: str) -> str:
    """The controller's string decoding, quirk included (``storage/zitiql/util.go ParseZqlString``).

    ``\\\\`` becomes ``\\`` FIRST, then ``\\"``, ``\\f``, ``\\n``, ``\\r``, ``\\t`` are expanded: a correctly
    escaped ``CORP\\\\tom`` is compared as ``CORP<TAB>om``.
    """
    t = raw.replace("\\\\", "\\")
    for seq, char in (('\\"', '"'), ("\\f", "\f"), ("\\n", "\n"), ("\\r", "\r"), ("\\t", "\t")):
        t = t.replace(seq, char)
    return t.replace("\\\\", "\\")


def _read_string(text: str, start: int) -> tuple[str, int]:
    """A STRING token (``ZitiQl.g4``: escapes ``\\ ["\\\\fnrt]`` only), decoded like the controller."""
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == '"':
            return parse_zql_string(text[start + 1 : i]), i + 1
        if ch == "\\":
            if i + 1 >= len(text) or text[i + 1] not in _ESC:
                raise FilterError(f"invalid escape sequence at position {i}")
            i += 2
            continue
        if ord(ch) < 0x20:
            raise FilterError(f"control character in string at position {i}")
        i += 1
    raise FilterError("unterminated string")


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch == '"':
            value, i2 = _read_string(text, i)
            toks.append(_Tok("str", value, i))
            i = i2
            continue
        m = _DATETIME.match(text, i)
        if m:
            try:
                toks.append(_Tok("dt", parse_time(m.group(1)), i))
            except ValueError as exc:
                raise FilterError(f"invalid datetime at position {i}") from exc
            i = m.end()
            continue
        m = _NUMBER.match(text, i)
        if m:
            raw = m.group(0)
            toks.append(_Tok("num", float(raw) if "." in raw else int(raw), i))
            i = m.end()
            continue
        if ch in "()[],":
            toks.append(_Tok("punct", ch, i))
            i += 1
            continue
        op = next((o for o in _OPS if text.startswith(o, i)), None)
        if op:
            toks.append(_Tok("op", op, i))
            i += len(op)
            continue
        m = _IDENT.match(text, i)
        if m:
            toks.append(_Tok("ident", m.group(0), i))
            i = m.end()
            continue
        m = _QUOTED_IDENT.match(text, i)
        if m:
            toks.append(_Tok("ident", m.group(1), i))
            i = m.end()
            continue
        raise FilterError(f"unexpected character {ch!r} at position {i}")
    return toks


# ---- AST -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldRef:
    name: str
    mode: str | None  # None, "anyOf", "allOf"


@dataclass(frozen=True)
class Cmp:
    ref: FieldRef
    op: str  # = != < <= > >= contains icontains in between
    value: Any
    negate: bool = False


@dataclass(frozen=True)
class IsEmpty:
    name: str


@dataclass(frozen=True)
class Count:
    name: str
    op: str
    value: Any


@dataclass(frozen=True)
class Bool:
    op: str  # and, or, not, const
    children: tuple[Any, ...] = ()
    const: bool = True


@dataclass(frozen=True)
class Query:
    predicate: Any | None
    sort: tuple[tuple[str, bool], ...] = ()  # (field, descending)
    skip: int | None = None
    limit: int | None = None  # -1 means "none"


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokenize(text)
        self.i = 0

    def peek(self, offset: int = 0) -> _Tok | None:
        j = self.i + offset
        return self.toks[j] if j < len(self.toks) else None

    def is_kw(self, *words: str, offset: int = 0) -> bool:
        tok = self.peek(offset)
        return tok is not None and tok.kind == "ident" and tok.value.lower() in {w.lower() for w in words}

    def is_punct(self, ch: str, offset: int = 0) -> bool:
        tok = self.peek(offset)
        return tok is not None and tok.kind == "punct" and tok.value == ch

    def next(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise FilterError("unexpected end of filter")
        self.i += 1
        return tok

    def expect_punct(self, ch: str) -> None:
        tok = self.next()
        if tok.kind != "punct" or tok.value != ch:
            raise FilterError(f"expected {ch!r} at position {tok.pos}")

    def expect_kw(self, word: str) -> None:
        if not self.is_kw(word):
            tok = self.peek()
            raise FilterError(f"expected {word!r} at position {tok.pos if tok else 'end'}")
        self.i += 1

    def ident(self) -> str:
        tok = self.next()
        if tok.kind != "ident":
            raise FilterError(f"expected identifier at position {tok.pos}")
        return str(tok.value)

    def int_value(self) -> int:
        tok = self.next()
        if tok.kind != "num" or not isinstance(tok.value, int) or tok.value < 0:
            raise FilterError(f"expected a non-negative integer at position {tok.pos}")
        return tok.value

    def query(self) -> Query:
        predicate = None
        if self.peek() is not None and not self.is_kw("sort", "skip", "limit"):
            predicate = self.or_expr()
        sort: list[tuple[str, bool]] = []
        skip: int | None = None
        limit: int | None = None
        if self.is_kw("sort"):
            self.i += 1
            self.expect_kw("by")
            while True:
                name = self.ident()
                desc = False
                if self.is_kw("asc", "desc"):
                    desc = self.next().value.lower() == "desc"
                sort.append((name, desc))
                if not self.is_punct(","):
                    break
                self.i += 1
        if self.is_kw("skip"):
            self.i += 1
            skip = self.int_value()
        if self.is_kw("limit"):
            self.i += 1
            if self.is_kw("none"):
                self.i += 1
                limit = -1
            else:
                limit = self.int_value()
        tok = self.peek()
        if tok is not None:
            raise FilterError(f"unexpected {tok.value!r} at position {tok.pos}")
        return Query(predicate, tuple(sort), skip, limit)

    def or_expr(self) -> Any:
        children = [self.and_expr()]
        while self.is_kw("or"):
            self.i += 1
            children.append(self.and_expr())
        return children[0] if len(children) == 1 else Bool("or", tuple(children))

    def and_expr(self) -> Any:
        children = [self.unary()]
        while self.is_kw("and"):
            self.i += 1
            children.append(self.unary())
        return children[0] if len(children) == 1 else Bool("and", tuple(children))

    def unary(self) -> Any:
        if self.is_kw("not"):
            self.i += 1
            return Bool("not", (self.unary(),))
        if self.is_punct("("):
            self.i += 1
            inner = self.or_expr()
            self.expect_punct(")")
            return inner
        if self.is_kw("true", "false"):
            nxt = self.peek(1)
            if (
                nxt is None
                or self.is_punct(")", offset=1)
                or (nxt.kind == "ident" and nxt.value.lower() in {"and", "or", "sort", "skip", "limit"})
            ):
                return Bool("const", (), self.next().value.lower() == "true")
        return self.predicate()

    def predicate(self) -> Any:
        if self.is_kw("anyOf", "allOf") and self.is_punct("(", offset=1):
            mode = "anyOf" if self.next().value.lower() == "anyof" else "allOf"
            self.expect_punct("(")
            name = self.ident()
            self.expect_punct(")")
            return self.op_tail(FieldRef(name, mode))
        if self.is_kw("isEmpty") and self.is_punct("(", offset=1):
            self.i += 1
            self.expect_punct("(")
            name = self.ident()
            self.expect_punct(")")
            return IsEmpty(name)
        if self.is_kw("count") and self.is_punct("(", offset=1):
            self.i += 1
            self.expect_punct("(")
            name = self.ident()
            self.expect_punct(")")
            tok = self.next()
            if tok.kind != "op":
                raise FilterError(f"expected comparison operator at position {tok.pos}")
            return Count(name, tok.value, self.value())
        name = self.ident()
        nxt = self.peek()
        if nxt is None or self.is_punct(")") or self.is_kw("and", "or", "sort", "skip", "limit"):
            return Cmp(FieldRef(name, None), "=", True)  # a bare boolean symbol, e.g. ``isAdmin``
        return self.op_tail(FieldRef(name, None))

    def op_tail(self, ref: FieldRef) -> Cmp:
        negate = False
        if self.is_kw("not"):
            self.i += 1
            negate = True
        tok = self.next()
        if tok.kind == "op" and not negate:
            return Cmp(ref, tok.value, self.value())
        word = tok.value.lower() if tok.kind == "ident" else ""
        if word in ("contains", "icontains"):
            value = self.value()
            if not isinstance(value, str):
                raise FilterError(f"{word} requires a string at position {tok.pos}")
            return Cmp(ref, word, value, negate)
        if word == "in":
            self.expect_punct("[")
            values = [self.value()]
            while self.is_punct(","):
                self.i += 1
                values.append(self.value())
            self.expect_punct("]")
            return Cmp(ref, "in", tuple(values), negate)
        if word == "between":
            low = self.value()
            self.expect_kw("and")
            return Cmp(ref, "between", (low, self.value()), negate)
        raise FilterError(f"expected an operator at position {tok.pos}")

    def value(self) -> Any:
        tok = self.next()
        if tok.kind in ("str", "num", "dt"):
            return tok.value
        if tok.kind == "ident" and tok.value.lower() in ("true", "false"):
            return tok.value.lower() == "true"
        if tok.kind == "ident" and tok.value.lower() == "null":
            return None
        raise FilterError(f"expected a value at position {tok.pos}")


def parse_query(text: str) -> Query:
    """Parse a ZitiQL filter (possibly only ``sort``/``skip``/``limit`` clauses)."""
    return _Parser(text).query()


# ---- evaluation ------------------------------------------------------------------------------------


@dataclass
class FieldSet(Generic[E]):
    """Public (filterable) fields of one entity type."""

    scalars: dict[str, Callable[[E], Any]]
    sets: dict[str, Callable[[E], Sequence[Any]]] = field(default_factory=dict)
    tags: Callable[[E], dict[str, Any]] | None = None

    def scalar(self, name: str) -> Callable[[E], Any]:
        if name in self.scalars:
            return self.scalars[name]
        if self.tags is not None and name.startswith("tags.") and len(name) > 5:
            key = name[5:]
            get_tags = self.tags
            return lambda e: get_tags(e).get(key)
        if name in self.sets:
            raise FilterError(f"{name} is a set symbol: use anyOf({name}) or allOf({name})")
        raise FilterError(f"no such field: {name}")

    def set_(self, name: str) -> Callable[[E], Sequence[Any]]:
        if name in self.sets:
            return self.sets[name]
        raise FilterError(f"{name} is not a set symbol" if name in self.scalars else f"no such field: {name}")

    def names(self) -> list[str]:
        extra = ["tags"] if self.tags is not None else []
        return sorted([*self.scalars, *self.sets, *extra])


def _comparable(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return True
    return isinstance(a, str) and isinstance(b, str)


def _test(op: str, actual: Any, expected: Any) -> bool:
    if op == "=":
        if expected is None:
            return actual is None
        return actual is not None and _comparable(actual, expected) and actual == expected
    if op == "!=":
        if expected is None:
            return actual is not None
        return actual is not None and _comparable(actual, expected) and actual != expected
    if op in ("<", "<=", ">", ">="):
        if actual is None or expected is None or not _comparable(actual, expected):
            return False
        if op == "<":
            return bool(actual < expected)
        if op == "<=":
            return bool(actual <= expected)
        if op == ">":
            return bool(actual > expected)
        return bool(actual >= expected)
    if op == "contains":
        return isinstance(actual, str) and expected in actual
    if op == "icontains":
        return isinstance(actual, str) and expected.lower() in actual.lower()
    if op == "in":
        return any(_test("=", actual, v) for v in expected)
    if op == "between":
        low, high = expected
        return _test(">=", actual, low) and _test("<=", actual, high)
    raise FilterError(f"unsupported operator {op}")


def compile_predicate(node: Any, fields: FieldSet[E]) -> Callable[[E], bool]:
    """Turn a parsed predicate into a callable, validating every field name up front."""
    if node is None:
        return lambda e: True
    if isinstance(node, Bool):
        if node.op == "const":
            const = node.const
            return lambda e: const
        subs = [compile_predicate(c, fields) for c in node.children]
        if node.op == "and":
            return lambda e: all(s(e) for s in subs)
        if node.op == "or":
            return lambda e: any(s(e) for s in subs)
        inner = subs[0]
        return lambda e: not inner(e)
    if isinstance(node, IsEmpty):
        get_set = fields.set_(node.name)
        return lambda e: len(get_set(e) or ()) == 0
    if isinstance(node, Count):
        get_set = fields.set_(node.name)
        op, value = node.op, node.value
        return lambda e: _test(op, len(get_set(e) or ()), value)
    assert isinstance(node, Cmp)
    op, value, negate = node.op, node.value, node.negate
    if node.ref.mode is None:
        get = fields.scalar(node.ref.name)
        return lambda e: _test(op, get(e), value) != negate
    get_set = fields.set_(node.ref.name)
    if node.ref.mode == "anyOf":
        return lambda e: any(_test(op, v, value) != negate for v in (get_set(e) or ()))
    return lambda e: all(_test(op, v, value) != negate for v in (get_set(e) or ()))


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (1, int(value))
    if isinstance(value, int | float):
        return (2, value)
    return (3, str(value))


def sort_entities(items: Iterable[E], sort: Sequence[tuple[str, bool]], fields: FieldSet[E]) -> list[E]:
    """Stable multi-key sort; unknown or set fields raise FilterError."""
    result = list(items)
    getters = [(fields.scalar(name), desc) for name, desc in sort]
    for get, desc in reversed(getters):
        result.sort(key=lambda e, g=get: _sort_key(g(e)), reverse=desc)  # type: ignore[misc]
    return result
