"""SCIM filters (RFC 7644 §3.4.2.2) and sorting (§3.4.2.3) translated to parameterised SQL.

The filter arrives parsed and bound by scim2-models; this module walks its AST with a
:class:`~scim2_models.path.FilterVisitor`, binds each attribute path with scim2-models' public
``ScimFilter.resolve``/``resolve_comparison`` and emits SQLAlchemy expressions. Every value is a bound
parameter, never spliced into SQL. The semantics follow :meth:`ScimFilter.match` exactly, which the
storage contract tests check: case folding unless ``caseExact``, a multi-valued attribute matches when
any value matches (``ne`` when none equals), a missing attribute is unequal to everything, and every
atom yields TRUE or FALSE (never SQL NULL) so that ``not`` negates as the evaluator does.

Where this differs from ``ScimFilter.match`` it refuses, with 400 ``invalidFilter`` (RFC 7644 §3.12:
"the specified attribute and filter comparison combination is not supported"), a filter that names an
attribute the published schema (``/Schemas``) does not define — e.g. ``title``, which ziti-scim does
not keep — and a filter value holding NUL (U+0000), which PostgreSQL text cannot store
(:mod:`app.scim.service`). The hostile-filter property test holds every refusal to these two rules.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from scim2_models import InvalidFilterException, Resource, SCIMException, TooManyException
from scim2_models.path import (
    AttributeBinding,
    AttrPath,
    CompareOperator,
    Comparison,
    FilterNode,
    FilterVisitor,
    LogicalExpr,
    LogicalOperator,
    Not,
    Present,
    ScimFilter,
    ValuePath,
    coerce_value,
)
from sqlalchemy import (
    Boolean,
    ColumnElement,
    Float,
    Integer,
    String,
    and_,
    case,
    exists,
    false,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
    true,
    type_coerce,
)
from sqlalchemy.sql.expression import FromClause, TableValuedAlias

from app.store.db import fold
from app.store.tables import emails, members, resources

MAX_FILTER_TERMS = 32
"""Comparisons a filter may hold; more is refused with ``tooMany`` (RFC 7644 §3.12) as too expensive."""

Kind = type


def _kind(binding: AttributeBinding) -> Kind:
    target = binding.target_type
    if isinstance(target, type):
        for kind in (bool, int, float, dt.datetime):
            if issubclass(target, kind):
                return kind
    return str


def _iso(value: dt.datetime) -> str:
    """The one text form of a dateTime the store keeps, so that text order is time order."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_datetime(value: Any) -> str:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return _iso(value)


@dataclass
class Dialect:
    """The few places where SQLite and PostgreSQL need different SQL."""

    is_sqlite: bool

    def text(self, expr: ColumnElement[Any]) -> ColumnElement[Any]:
        """A text expression that orders by code point, as Python compares strings."""
        return expr if self.is_sqlite else expr.collate("C")

    def fold(self, expr: ColumnElement[Any]) -> ColumnElement[Any]:
        """``expr`` folded as :func:`app.store.db.fold` folds a value (NFC, lower case, NFC), so that a
        case-insensitive comparison matches what :meth:`ScimFilter.match` matches: on SQLite ``lower`` is
        that very function (registered by :class:`app.store.db.Database`); PostgreSQL's ``lower`` leaves
        the normalisation form alone, so a decomposed ``cafe\u0301`` would not equal ``café``."""
        if self.is_sqlite:
            return func.lower(expr)
        nfc: ColumnElement[Any] = literal_column("NFC")
        return func.normalize(func.lower(func.normalize(expr, nfc)), nfc)

    def json_scalar(self, doc: ColumnElement[Any], path: list[str], kind: Kind) -> ColumnElement[Any]:
        node: Any = doc[tuple(path)] if len(path) > 1 else doc[path[0]]
        result: ColumnElement[Any]
        if kind is bool:
            result = node.as_boolean()
        elif kind is int:
            result = node.as_integer()
        elif kind is float:
            result = node.as_float()
        else:
            result = node.as_string()
        return result

    def elements(self, doc: ColumnElement[Any], path: list[str]) -> TableValuedAlias:
        """The values of a JSON array as rows with ``value`` and ``idx`` columns."""
        if self.is_sqlite:
            jsonpath = "$" + "".join(f'."{part}"' for part in path)
            return func.json_each(doc, jsonpath).table_valued("value", "key").alias()
        node = doc[tuple(path)] if len(path) > 1 else doc[path[0]]
        return func.jsonb_array_elements(node).table_valued("value", with_ordinality="ordinality").alias()

    def element_index(self, elements: TableValuedAlias) -> ColumnElement[Any]:
        return elements.c.key if self.is_sqlite else elements.c.ordinality

    def element_scalar(self, elements: TableValuedAlias, sub: str | None, kind: Kind) -> ColumnElement[Any]:
        value = elements.c.value
        if sub is None:
            if self.is_sqlite:
                return type_coerce(value, _SQL_TYPES[kind])
            text = value.op("#>>")(literal("{}"))
            return text if kind is str else text.cast(_SQL_TYPES[kind])
        if self.is_sqlite:
            return type_coerce(func.json_extract(value, f'$."{sub}"'), _SQL_TYPES[kind])
        text = value.op("->>")(literal(sub))
        return text if kind is str else text.cast(_SQL_TYPES[kind])


_SQL_TYPES: dict[Kind, Any] = {str: String(), bool: Boolean(), int: Integer(), float: Float()}


class Elements:
    """The values of a multi-valued attribute of the resource row, as rows one can test."""

    def __init__(
        self,
        source: FromClause | None,
        owner: ColumnElement[bool],
        columns: Callable[[str | None, Kind], ColumnElement[Any] | None],
        order: ColumnElement[Any] | None,
        primary: ColumnElement[Any] | None,
    ) -> None:
        self.source = source
        self.owner = owner
        self.columns = columns
        self.order = order
        self.primary = primary

    def exists(self, condition: ColumnElement[bool]) -> ColumnElement[bool]:
        query: Any = select(literal_column("1"))
        if self.source is not None:
            query = query.select_from(self.source)
        return exists(query.where(self.owner, condition))

    def first(self, sub: str | None, kind: Kind) -> ColumnElement[Any] | None:
        """The value sorting uses: the primary entry's, else the first entry's (RFC 7644 §3.4.2.3)."""
        column = self.columns(sub, kind)
        if column is None:
            return None
        query = select(column)
        if self.source is not None:
            query = query.select_from(self.source)
        ordering: list[Any] = []
        if self.primary is not None:
            ordering.append(case((self.primary == true(), 0), else_=1))
        if self.order is not None:
            ordering.append(self.order)
        return query.where(self.owner).order_by(*ordering).limit(1).scalar_subquery()


# A presence test of a name no model declares: binding it to a model never fails (unknown attributes are
# left alone), and the filter's text does not matter to what it resolves.
_RESOLVER_FILTER = Present(AttrPath(attr="ziti-scim-resolver"))


def _resolver(model: type[BaseModel]) -> ScimFilter[Any]:
    """A filter bound to ``model``: its public ``resolve``/``resolve_comparison`` bind a filter's attribute
    paths to the model exactly as :meth:`ScimFilter.match` does (the ``value`` convention of a comparison
    against a multi-valued complex attribute included)."""
    bound: type[ScimFilter[Any]] = ScimFilter[model]  # type: ignore[valid-type]
    return bound(_RESOLVER_FILTER)


class Translator(FilterVisitor[ColumnElement[bool]]):
    """Translate one filter, for one resource type, into a WHERE clause on ``row``."""

    def __init__(self, model: type[Resource[Any]], row: Any, dialect: Dialect) -> None:
        self.model = model
        self.row = row
        self.dialect = dialect
        self.core_urn = str(model.__schema__)
        self.extensions = {str(urn): ext for urn, ext in model.get_extension_models().items()}
        self.terms = 0
        # Set while translating the inner filter of a value path: the element being tested.
        self.element: Elements | None = None
        self.element_model: type[Any] | None = None
        self.resolver = _resolver(model)
        self.element_resolver: ScimFilter[Any] | None = None

    # -- attribute addressing ---------------------------------------------------------------

    def _names(self, binding: AttributeBinding) -> tuple[list[str], str, str | None]:
        """(host JSON path, attribute name, sub-attribute name) in SCIM spelling, from the binding URN."""
        urn = binding.urn
        for ext_urn in self.extensions:
            if urn.lower().startswith(ext_urn.lower() + ":"):
                host, rest = [ext_urn], urn[len(ext_urn) + 1 :]
                break
        else:
            host, rest = (
                [],
                urn[len(self.core_urn) + 1 :] if urn.lower().startswith(self.core_urn.lower()) else urn,
            )
        head, _, sub = rest.partition(".")
        return host, head, sub or None

    def _resolve(self, attr_path: AttrPath, *, comparison: bool) -> AttributeBinding | None:
        resolver = self.element_resolver or self.resolver
        if comparison:
            return resolver.resolve_comparison(attr_path, strict=False)
        return resolver.resolve(attr_path, strict=False)

    def _elements(self, host: list[str], head: str) -> Elements:
        row = self.row
        if not host and head == "members" and self.model.__name__.startswith("Group"):
            member = resources.alias("member")
            source = members.join(member, member.c.pk == members.c.member_pk)

            def member_column(sub: str | None, kind: Kind) -> ColumnElement[Any] | None:
                return {
                    "value": member.c.id,
                    "display": members.c.display,
                    "type": member.c.resource_type,
                }.get(sub or "value")

            return Elements(source, members.c.group_pk == row.c.pk, member_column, members.c.member_pk, None)
        if not host and head == "groups":
            group = resources.alias("owner_group")
            source = members.join(group, group.c.pk == members.c.group_pk)

            def group_column(sub: str | None, kind: Kind) -> ColumnElement[Any] | None:
                return {
                    "value": group.c.id,
                    "display": self.dialect.json_scalar(group.c.data, ["displayName"], str),
                    "type": literal("direct"),
                }.get(sub or "value")

            return Elements(source, members.c.member_pk == row.c.pk, group_column, members.c.group_pk, None)
        elements = self.dialect.elements(row.c.data, [*host, head])

        def json_column(sub: str | None, kind: Kind) -> ColumnElement[Any]:
            return self.dialect.element_scalar(elements, sub, kind)

        primary = self.dialect.element_scalar(elements, "primary", bool)
        return Elements(elements, true(), json_column, self.dialect.element_index(elements), primary)

    def _scalar(self, binding: AttributeBinding, kind: Kind) -> ColumnElement[Any] | None:
        """The SQL expression of a single-valued attribute of the row, or of the current element."""
        host, head, sub = self._names(binding)
        if self.element is not None:
            return self.element.columns(head if sub is None else sub, kind)
        row = self.row
        if not host and sub is None:
            column: ColumnElement[Any] | None = {"id": row.c.id, "externalId": row.c.external_id}.get(head)
            if column is not None:
                return column
        if not host and head == "meta":
            return {
                "created": row.c.created,
                "lastModified": row.c.last_modified,
                "resourceType": row.c.resource_type,
                "version": literal('W/"') + type_coerce(row.c.version, String()) + literal('"'),
            }.get(sub or "")
        return self.dialect.json_scalar(row.c.data, [*host, head] + ([sub] if sub else []), kind)

    def _folded_column(self, binding: AttributeBinding) -> ColumnElement[Any] | None:
        """An indexed column already holding the folded value, for the hot case-insensitive attributes."""
        host, head, sub = self._names(binding)
        if self.element is not None or host or sub is not None:
            return None
        return {"userName": self.row.c.user_name_ci, "displayName": self.row.c.display_name_ci}.get(head)

    # -- comparisons --------------------------------------------------------------------------

    def _compare(
        self, column: ColumnElement[Any], op: CompareOperator, value: Any, kind: Kind, folded: bool
    ) -> ColumnElement[bool]:
        if value is None:
            if op is CompareOperator.eq:
                return column.is_(None)
            if op is CompareOperator.ne:
                return column.is_not(None)
            return false()
        if kind is dt.datetime:
            try:
                value = canonical_datetime(value)
            except (TypeError, ValueError):
                return true() if op is CompareOperator.ne else false()
            kind = str
        if isinstance(value, str) and kind is not str:
            return true() if op is CompareOperator.ne else false()
        if kind is str:
            if not isinstance(value, str):
                return true() if op is CompareOperator.ne else false()
            if folded:
                value = fold(value)
                column = self.dialect.fold(column)
            column = self.dialect.text(column)
        parameter = literal(value, _SQL_TYPES.get(kind, String()))
        present = column.is_not(None)
        match op:
            case CompareOperator.eq:
                return and_(present, column == parameter)
            case CompareOperator.ne:
                return or_(column.is_(None), column != parameter)
            case CompareOperator.co:
                position = func.instr if self.dialect.is_sqlite else func.strpos
                return and_(present, position(column, parameter) > 0)
            case CompareOperator.sw:
                return and_(present, func.substr(column, 1, func.length(parameter)) == parameter)
            case CompareOperator.ew:
                return and_(
                    present,
                    func.length(column) >= func.length(parameter),
                    func.substr(column, func.length(column) - func.length(parameter) + 1) == parameter,
                )
            case CompareOperator.gt:
                return and_(present, column > parameter)
            case CompareOperator.ge:
                return and_(present, column >= parameter)
            case CompareOperator.lt:
                return and_(present, column < parameter)
            case _:
                return and_(present, column <= parameter)

    def _count(self) -> None:
        self.terms += 1
        if self.terms > MAX_FILTER_TERMS:
            raise TooManyException(detail=f"A filter may hold at most {MAX_FILTER_TERMS} comparisons")

    def visit_comparison(self, node: Comparison) -> ColumnElement[bool]:
        self._count()
        binding = self._resolve(node.attr_path, comparison=True)
        if binding is None:
            return false()
        kind = _kind(binding)
        try:
            value = coerce_value(binding, node.value, node.op)
        except SCIMException:
            raise
        except (TypeError, ValueError) as error:
            raise InvalidFilterException(detail=str(error)) from error
        folded = kind is str and not binding.case_exact
        if binding.is_multivalued and self.element is None:
            return self._compare_elements(binding, node.op, value, kind, folded)
        fast = self._folded_column(binding) if folded else None
        if fast is not None:
            operand = fold(value) if isinstance(value, str) else value
            return self._compare(fast, node.op, operand, kind, folded=False)
        column = self._scalar(binding, kind)
        if column is None:
            return self._compare(literal(None), node.op, value, kind, folded)
        return self._compare(column, node.op, value, kind, folded)

    def _compare_elements(
        self, binding: AttributeBinding, op: CompareOperator, value: Any, kind: Kind, folded: bool
    ) -> ColumnElement[bool]:
        host, head, sub = self._names(binding)
        if (
            not host
            and head == "emails"
            and sub == "value"
            and isinstance(value, str)
            and op
            in (
                CompareOperator.eq,
                CompareOperator.ne,
            )
        ):
            # The indexed shortcut for the e-mail lookups IdPs make.
            hit: ColumnElement[bool] = self.row.c.pk.in_(
                select(emails.c.owner_pk).where(emails.c.value_ci == fold(value))
            )
            return hit if op is CompareOperator.eq else not_(hit)
        elements = self._elements(host, head)
        column = elements.columns(sub, kind)
        if column is None:
            return self._compare(literal(None), op, value, kind, folded)
        if value is None and op in (CompareOperator.eq, CompareOperator.ne):
            # An attribute with no values is null (RFC 7643 §2.5), as ScimFilter.match reads it.
            has_null = elements.exists(column.is_(None))
            has_values = elements.exists(true())
            if op is CompareOperator.eq:
                return or_(not_(has_values), has_null)
            return and_(has_values, not_(has_null))
        if op is CompareOperator.ne:
            # "ne" on a multi-valued attribute: no value equals the operand.
            return not_(elements.exists(self._compare(column, CompareOperator.eq, value, kind, folded)))
        return elements.exists(self._compare(column, op, value, kind, folded))

    def visit_present(self, node: Present) -> ColumnElement[bool]:
        self._count()
        binding = self._resolve(node.attr_path, comparison=False)
        if binding is None:
            return false()
        kind = _kind(binding)
        host, head, sub = self._names(binding)
        if binding.is_multivalued and self.element is None:
            elements = self._elements(host, head)
            column = elements.columns(sub, kind) if sub is not None else None
            if column is None:
                return elements.exists(true())
            return elements.exists(self._present(column, kind))
        if (
            self.element is None
            and binding.sub_field_name is None
            and binding.field_type is not None
            and (isinstance(binding.field_type, type) and issubclass(binding.field_type, BaseModel))
        ):
            # A complex attribute is stored only when one of its sub-attributes is present.
            return self.dialect.json_scalar(self.row.c.data, [*host, head], str).is_not(None)
        column = self._scalar(binding, kind)
        return false() if column is None else self._present(column, kind)

    @staticmethod
    def _present(column: ColumnElement[Any], kind: Kind) -> ColumnElement[bool]:
        if kind is str:
            return and_(column.is_not(None), column != "")
        return column.is_not(None)

    def visit_not(self, node: Not) -> ColumnElement[bool]:
        return not_(self.visit(node.expr))

    def visit_logical_expr(self, node: LogicalExpr) -> ColumnElement[bool]:
        terms = [self.visit(term) for term in node.terms]
        return and_(*terms) if node.op is LogicalOperator.and_ else or_(*terms)

    def visit_value_path(self, node: ValuePath) -> ColumnElement[bool]:
        if self.element is not None:
            return false()  # nested value paths are not allowed (RFC 7644 errata 5607)
        binding = self._resolve(node.attr_path, comparison=False)
        if binding is None or not binding.is_multivalued:
            return false()
        host, head, _ = self._names(binding)
        elements = self._elements(host, head)
        element_type = binding.field_type
        self.element = elements
        self.element_model = (
            element_type if isinstance(element_type, type) and issubclass(element_type, BaseModel) else None
        )
        try:
            if self.element_model is None:
                return elements.exists(self._scalar_element_filter(node.val_filter, binding))
            self.element_resolver = _resolver(self.element_model)
            return elements.exists(self.visit(node.val_filter))
        finally:
            self.element = None
            self.element_model = None
            self.element_resolver = None

    def _scalar_element_filter(self, node: FilterNode, binding: AttributeBinding) -> ColumnElement[bool]:
        """The inner filter of a value path over plain values: ``value`` names the value itself."""
        assert self.element is not None
        kind = _kind(binding)
        folded = kind is str and not binding.case_exact
        if isinstance(node, Comparison | Present):
            if node.attr_path.attr.lower() != "value" or node.attr_path.sub_attr:
                return false()
            self._count()
            column = self.element.columns(None, kind)
            assert column is not None
            if isinstance(node, Present):
                return self._present(column, kind)
            return self._compare(column, node.op, node.value, kind, folded)
        if isinstance(node, Not):
            return not_(self._scalar_element_filter(node.expr, binding))
        if isinstance(node, LogicalExpr):
            terms = [self._scalar_element_filter(term, binding) for term in node.terms]
            return and_(*terms) if node.op is LogicalOperator.and_ else or_(*terms)
        return false()

    # -- sorting ------------------------------------------------------------------------------

    def sort_key(self, binding: AttributeBinding | None) -> ColumnElement[Any] | None:
        """The value RFC 7644 §3.4.2.3 sorts a resource by, or None when the type lacks the attribute."""
        if binding is None:
            return None
        kind = _kind(binding)
        folded = kind is str and not binding.case_exact
        if binding.is_multivalued:
            host, head, sub = self._names(binding)
            elements = self._elements(host, head)
            column = elements.first(sub if sub is not None else "value", kind)
        elif folded and (fast := self._folded_column(binding)) is not None:
            return self.dialect.text(fast)
        else:
            column = self._scalar(binding, kind)
        if column is None:
            return None
        if kind is str:
            return self.dialect.text(self.dialect.fold(column) if folded else column)
        return column


_KEYS = frozenset({"id", "username", "externalid"})
"""User attributes each with its own index: an ``eq`` on one finds a row or a few."""
_USER = "urn:ietf:params:scim:schemas:core:2.0:user"


def by_key(scim_filter: Any, resource_types: Collection[str]) -> bool:
    """Whether ``scim_filter`` finds users by a key (``userName``, ``externalId`` or ``id`` ``eq`` a value,
    the lookup IdPs make before every create): a few rows by an index, whatever the directory's size."""
    return (
        set(resource_types) == {"User"}
        and isinstance(scim_filter, Comparison)
        and scim_filter.op is CompareOperator.eq
        and scim_filter.attr_path.sub_attr is None
        and (scim_filter.attr_path.uri or _USER).lower() == _USER
        and scim_filter.attr_path.attr.lower() in _KEYS
    )


def where_clause(
    scim_filter: FilterNode | None,
    models: dict[str, type[Resource[Any]]],
    row: Any,
    dialect: Dialect,
) -> ColumnElement[bool]:
    """The WHERE clause selecting the resources of ``models`` (resource type name → model) that match."""
    clauses = []
    for name, model in models.items():
        clause: ColumnElement[bool] = row.c.resource_type == name
        if scim_filter is not None:
            clause = and_(clause, Translator(model, row, dialect).visit(scim_filter))
        clauses.append(clause)
    return or_(*clauses) if len(clauses) > 1 else clauses[0]
