"""SCIM attribute paths evaluated on plain dicts (RFC 7644 §3.5.2 ``PATH``, RFC 7643 §2.1).

Forms accepted::

    userName                          name.givenName
    emails[type eq "work"].value      emails[primary eq true].value
    roles[primary eq "True"].value    emails[type eq "work" and primary eq true].value
    urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber
    urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value
    urn:openziti:scim:schemas:extension:ziti:2.0:User:roleAttributes

The grammar is scim2-models' (``scim2_models.Path``, the one the SCIM endpoints parse PATCH paths and
filters with): an attribute, at most one sub-attribute, and a value filter on the attribute, optionally
qualified by a schema URN (split at the last ``:`` before any ``[``). What is ours is the evaluation
(:func:`evaluate`, :mod:`app.mapping.value_filter`), which reads the raw request body, and three
refusals on top of the grammar: an empty path, a path that is a comparison (``emails.type eq "work"``,
which RFC 7644 §3.5.2 errata 7122 allows in a PATCH but which names no values), and a value filter that
can match nothing (:func:`app.mapping.value_filter.filter_problem`). A syntax error names what was found
and what the grammar expected there, from the parser's own report. The grammar stops at one
sub-attribute and filters only the attribute itself, since SCIM has nothing below a sub-attribute
(RFC 7643 errata 8415): ``name.givenName.x``, ``name.givenName[...]`` and ``a[x].b[y]`` are refused at
start-up; no preset or IdP trace uses them.

Names are case-insensitive (RFC 7643 §2.1); the core User/Group URNs address the top level. Evaluation
yields every value the path reaches, flattening multi-valued attributes, so ``emails.value`` gives all
addresses.

Leniencies, all documented because real clients need them:
- An element of a multi-valued attribute that is not an object (Asgardeo's ``"emails": ["a@x"]``, the ziti
  extension's ``roleAttributes``) is treated as ``{"value": element}``.
- Primary fallback: with ``primary_fallback=True``, a path filtered by exactly ``[primary eq true]``
  whose elements are all unmarked selects the first element. RFC 7643 §2.4 allows at most one primary and
  none at all; "no primary" means "no preference", and the first element is what a human reads as the
  main address. Used by every preset.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lark.exceptions import UnexpectedCharacters, UnexpectedToken
from scim2_models import InvalidPathException, Path
from scim2_models.path import AttrPath, ValuePath

from app.mapping.errors import PathSyntaxError
from app.mapping.value_filter import ci_get, filter_problem, is_primary_true, matches

CORE_SCHEMAS = frozenset(
    {
        "urn:ietf:params:scim:schemas:core:2.0:user",
        "urn:ietf:params:scim:schemas:core:2.0:group",
    }
)

_VALUE = "a value (a quoted string, a number, true, false or null)"
# The parser's terminals (scim2_models.path.grammar) in the words of an error message, in this order.
_TERMINALS = {
    "ATTR_PATH": "an attribute name", "SUB_ATTR": "a sub-attribute name", "_LBRACKET": "'['",
    "COMPARE_OP": "an operator", "PR": "pr",
    **dict.fromkeys(["STRING", "NUMBER", "TRUE", "FALSE", "NULL"], _VALUE),
    "_NOT": "'not'", "_LPAR": "'('", "_RPAR": "')'", "_RBRACKET": "']'", "_DOT": "'.'",
    "_AND": "'and'", "_OR": "'or'", "$END": "end of path",
}


@dataclass(frozen=True)
class ScimPath:
    """A parsed path; ``text`` is the original spelling (used in error messages)."""

    text: str
    node: AttrPath | ValuePath

    @property
    def head(self) -> AttrPath:
        """The attribute the path starts from (with its schema URN, if any)."""
        return self.node if isinstance(self.node, AttrPath) else self.node.attr_path

    @property
    def schema(self) -> str | None:
        return self.head.uri

    @property
    def attribute(self) -> str:
        return self.head.attr


@dataclass(frozen=True)
class Evaluation:
    values: tuple[object, ...]
    notes: tuple[str, ...] = ()


def _parses(text: str) -> bool:
    try:
        return isinstance(Path(text).ast, AttrPath | ValuePath)
    except InvalidPathException:
        return False


def _syntax_error(text: str, exc: InvalidPathException) -> PathSyntaxError:
    """The parser's report (the lark error scim2-models raised from) as a position and plain words."""
    cause = exc.__cause__
    if isinstance(cause, UnexpectedCharacters):
        found = "'\"' (an unterminated or invalid string)" if cause.char == '"' else repr(cause.char)
        expected = set(cause.allowed)
    elif isinstance(cause, UnexpectedToken):
        found = _TERMINALS["$END"] if cause.token.type == "$END" else repr(str(cause.token))
        expected = set(cause.expected)
    else:  # a form the tree builder refuses (a filter on a sub-attribute, a number out of range)
        return PathSyntaxError(text, None, str(exc.detail))
    position = cause.column - 1
    if "_LBRACKET" in expected:  # past an attribute name an operator makes a comparison, refused below
        expected -= {"COMPARE_OP", "PR"}
    if found != _TERMINALS["$END"] and _parses(text[:position]):  # lark leaves out where a path may end
        expected.add("$END")
    words = list(dict.fromkeys(_TERMINALS[name] for name in _TERMINALS if name in expected))
    wanted = ", expected " + ", ".join(words[:-1]) + " or " * (len(words) > 1) + words[-1] if words else ""
    return PathSyntaxError(text, position, f"unexpected {found}{wanted}")


def parse_path(text: str) -> ScimPath:
    """Parse ``text`` with scim2-models' grammar; raises `PathSyntaxError`."""
    if not isinstance(text, str) or not text.strip():
        raise PathSyntaxError(str(text), 0, "empty attribute path")
    text = text.strip()
    try:
        node = Path(text).ast
    except InvalidPathException as exc:
        raise _syntax_error(text, exc) from exc
    if not isinstance(node, AttrPath | ValuePath):
        detail = "a comparison is not an attribute path (write attribute[filter].subAttribute)"
        raise PathSyntaxError(text, None, detail)
    if isinstance(node, ValuePath) and (problem := filter_problem(node.val_filter)) is not None:
        raise PathSyntaxError(text, None, problem)
    return ScimPath(text, node)


def _as_complex(element: object) -> Mapping[str, object]:
    if isinstance(element, Mapping):
        return element
    return {"value": element}


def _children(nodes: list[object], name: str) -> list[object]:
    """The values of attribute ``name`` of each node, multi-valued ones flattened."""
    found: list[object] = []
    for node in nodes:
        if isinstance(node, Mapping):
            child = ci_get(node, name)
        elif name.casefold() == "value":
            child = node  # a plain element of a multi-valued attribute is its own value
        else:
            child = None
        if child is not None:
            found += [item for item in child if item is not None] if isinstance(child, list) else [child]
    return found


def evaluate(path: ScimPath, resource: Mapping[str, object], *, primary_fallback: bool = False) -> Evaluation:
    """Every value ``path`` reaches in ``resource`` (empty when absent); never raises on odd input."""
    notes: list[str] = []
    base: object = resource
    head, node = path.head, path.node
    if head.uri is not None and head.uri.casefold() not in CORE_SCHEMAS:
        base = ci_get(resource, head.uri)
        if not isinstance(base, Mapping):
            return Evaluation((), (f"extension {head.uri} is absent",))
    items = _children([base], head.attr)
    if isinstance(node, ValuePath):
        selected = [item for item in items if matches(node.val_filter, _as_complex(item))]
        if not selected and items and primary_fallback and is_primary_true(node.val_filter):
            selected = [items[0]]
            notes.append(f"no element of {head.attr} is marked primary; used the first one")
        elif len(selected) > 1 and is_primary_true(node.val_filter):
            notes.append(f"{len(selected)} elements of {head.attr} are marked primary")
        items = selected
    sub_attr = node.sub_attr if isinstance(node, ValuePath) else head.sub_attr
    if sub_attr is not None:
        items = _children(items, sub_attr)
    return Evaluation(tuple(items), tuple(notes))


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
