"""The SQL implementation of scim2-server's :class:`~scim2_server.storage.AsyncScimStorage`.

One instance serves one source: every query is scoped to it, so a source sees and changes only its own
resources. Every write marks the users whose desired identity may have changed as dirty, in the same
transaction, which is what the reconciler converges from.
"""

from __future__ import annotations

import copy
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Collection, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Any, NamedTuple, Protocol

from scim2_models import (
    InvalidValueException,
    NotFoundException,
    PreconditionFailedException,
    Resource,
    ResourceType,
    ResponseParameters,
    ScimProvider,
    SearchRequest,
    UniquenessException,
)
from scim2_server.storage import AsyncScimStorage, SearchPage
from sqlalchemy import (
    JSON,
    ColumnElement,
    Select,
    and_,
    bindparam,
    delete,
    func,
    insert,
    select,
    type_coerce,
    update,
)
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.constants import STATUS_ATTRIBUTES, STATUS_EXTENSION, ZITI_EXTENSION
from app.store import provisioning, queue
from app.store.db import CHUNK, WRITE, Database, fold
from app.store.filters import Dialect, Translator, by_key, where_clause
from app.store.offload import off_loop
from app.store.tables import emails, members, resources
from app.store.tables import provisioning as records
from app.store.types import Admission, RecordRead

OFF_LOOP_REFS = 1000
"""A resource with more member/group references than this is validated in a worker thread."""
NEVER_STORED = ("password",)
"""Attributes that are never persisted, whatever the schema says (RFC 7643 §4.1.1: password is writeOnly)."""


_MEMBER = resources.alias("member")
_OWNER_GROUP = resources.alias("owner_group")
"""Built once: an alias builds its column collection when first used, which cost more than the query."""

_ROW = select(resources).where(
    resources.c.source == bindparam("row_source"),
    resources.c.resource_type == bindparam("row_type"),
    resources.c.id == bindparam("row_id"),
)
_ROW_LOCKED = _ROW.with_for_update()
_USER_GROUPS = (
    select(members.c.member_pk, _OWNER_GROUP.c.id, _OWNER_GROUP.c.data)
    .join(_OWNER_GROUP, _OWNER_GROUP.c.pk == members.c.group_pk)
    .where(members.c.member_pk.in_(bindparam("member_pks", expanding=True)))
    .order_by(members.c.member_pk, members.c.group_pk)
)


def _groups_json(*, is_sqlite: bool) -> Any:
    """A user row's groups as one JSON array of ``[group pk, id, displayName]`` (``groups_json``, a
    correlated subquery): the row and its groups in one statement instead of two, which costs more than
    the rows it reads (:func:`_group_entries` turns it into ``groups``)."""
    group = _OWNER_GROUP
    entry = (func.json_array if is_sqlite else func.json_build_array)(
        group.c.pk, group.c.id, group.c.data["displayName"].as_string()
    )
    groups = (
        select((func.json_group_array if is_sqlite else func.json_agg)(entry))
        .select_from(members.join(group, group.c.pk == members.c.group_pk))
        .where(members.c.member_pk == resources.c.pk)
        .scalar_subquery()
    )
    return type_coerce(groups, JSON).label("groups_json")


_GROUPS_JSON = {is_sqlite: _groups_json(is_sqlite=is_sqlite) for is_sqlite in (True, False)}
_USER_ROW = {(is_sqlite, False): _ROW.add_columns(_GROUPS_JSON[is_sqlite]) for is_sqlite in (True, False)}
# PostgreSQL's write transactions lock what they read (Database.locks); SQLite's never do.
_USER_ROW[(False, True)] = _USER_ROW[(False, False)].with_for_update(of=resources)
"""A user's :data:`_ROW` with its groups, built once per dialect (and lock, :meth:`Database.locks`)."""
_USER_ROW_RECORD = (
    _USER_ROW[(True, False)]
    .add_columns(*provisioning.SETTLED_COLUMNS)
    .select_from(
        resources.outerjoin(
            records, and_(records.c.source == resources.c.source, records.c.user_id == resources.c.id)
        )
    )
)
"""The same with the user's provisioning record (SQLite; :meth:`SqlStorage.get`)."""


def _group_entry(group_id: str, display: Any) -> dict[str, Any]:
    """One entry of a user's ``groups`` (RFC 7643 §4.1.2): a direct membership of a group."""
    entry = {"value": group_id, "$ref": f"Groups/{group_id}", "type": "direct"}
    if display:
        entry["display"] = display
    return entry


def _group_entries(groups_json: list[list[Any]] | None) -> list[dict[str, Any]]:
    """A user's ``groups`` from :func:`_groups_json`, in the order the groups were made."""
    return [_group_entry(group_id, display) for _pk, group_id, display in sorted(groups_json or ())]


_INSERT = insert(resources)
_UPDATE = (
    update(resources)
    .where(resources.c.pk == bindparam("u_pk"))
    .values(
        version=bindparam("u_version"),
        last_modified=bindparam("u_last_modified"),
        user_name_ci=bindparam("u_user_name_ci"),
        display_name_ci=bindparam("u_display_name_ci"),
        external_id=bindparam("u_external_id"),
        data=bindparam("u_data", type_=resources.c.data.type),
    )
)
"""The statements of every read and user write, built once: building a statement and its cache key
cost more than SQLite running it."""


def _show_status(document: dict[str, Any], status: dict[str, Any]) -> None:
    """Put a user's status (:data:`~app.constants.STATUS_EXTENSION`) in its document, schema listed."""
    document[STATUS_EXTENSION] = status
    if STATUS_EXTENSION not in document.setdefault("schemas", []):
        document["schemas"] = [*document["schemas"], STATUS_EXTENSION]


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def etag(version: int) -> str:
    return f'W/"{version}"'


def _present(value: Any) -> bool:
    """RFC 7644 §3.4.2.2 presence: non-null, non-empty string, or a complex value with a present part."""
    if value is None:
        return False
    if isinstance(value, str):
        return value != ""
    if isinstance(value, dict):
        return any(_present(item) for item in value.values())
    if isinstance(value, list):
        return any(_present(item) for item in value)
    return True


def _compact(document: dict[str, Any]) -> dict[str, Any]:
    """Drop complex values with nothing present, so that ``pr`` is a NULL test in SQL."""
    result: dict[str, Any] = {}
    for key, value in document.items():
        if isinstance(value, dict):
            value = _compact(value)
            if not _present(value):
                continue
        elif isinstance(value, list):
            value = [_compact(item) if isinstance(item, dict) else item for item in value]
            value = [item for item in value if not isinstance(item, dict) or _present(item)]
            if not value:
                continue
        elif value is None:
            continue
        result[key] = value
    return result


MAX_OFFSET = 2**62
"""A search starting further than this is answered with its total only (an OFFSET must fit in int64)."""

MAX_INDEXED_LENGTH = 1024
"""Longest userName, displayName, externalId or email value: they are indexed, and PostgreSQL's btree
entries are limited to about 2.7 kB; no real IdP value comes close."""


def _check_indexed_lengths(document: dict[str, Any]) -> None:
    values = [
        ("userName", document.get("userName")),
        ("displayName", document.get("displayName")),
        ("externalId", document.get("externalId")),
    ]
    values += [
        ("emails.value", email.get("value"))
        for email in document.get("emails", [])
        if isinstance(email, dict)
    ]
    for name, value in values:
        if isinstance(value, str) and len(value) > MAX_INDEXED_LENGTH:
            raise InvalidValueException(detail=f"{name} is longer than {MAX_INDEXED_LENGTH} characters")


class _Read(NamedTuple):
    """What :meth:`SqlStorage.get` read of a resource in a write transaction, for the update that follows
    (:meth:`SqlStorage._read_before`)."""

    transaction: object
    """The transaction it was read in (:func:`_transaction_of`)."""
    row: Row[Any]
    groups: dict[int, list[dict[str, Any]]] | None
    """A user's groups, on SQLite only (a membership is another row)."""
    record: RecordRead | None
    """A user's provisioning record, on SQLite only (another row), when provisioning is on."""
    document: dict[str, Any]
    """The document :meth:`SqlStorage.get` answered (:meth:`SqlStorage.unchanged`)."""


def _transaction_of(conn: AsyncConnection) -> object:
    """The transaction ``conn`` runs now: a connection serves many in turn (``Database._connection``)."""
    return conn.sync_connection.get_transaction() if conn.sync_connection is not None else None


class Stored(NamedTuple):
    """The columns of a resource row that :meth:`SqlStorage._documents` reads, as just written."""

    pk: int
    resource_type: str
    id: str
    data: dict[str, Any]
    created: str
    last_modified: str
    version: int


def _email_keys(document: dict[str, Any]) -> set[str]:
    """The folded email values of a user document: what the ``emails`` lookup table holds for it."""
    return {
        fold(email["value"])
        for email in document.get("emails", [])
        if isinstance(email, dict) and isinstance(email.get("value"), str)
    }


class UserHooks(Protocol):
    """What the provisioning stage adds to user writes and reads, inside the SCIM transaction."""

    async def admit(
        self,
        conn: AsyncConnection,
        source: str,
        user_id: str,
        document: dict[str, Any],
        groups: list[dict[str, Any]],
        before: dict[str, Any] | None = None,
        record: RecordRead | None = None,
    ) -> Admission:
        """Check a user's new state can be provisioned (raise a SCIMException to refuse the write).

        ``before`` is the stored document the write replaces (None for a new user); ``record`` its
        provisioning record when the transaction read it with the user's row (None: not read). Returns
        what :meth:`view` will show of the user after this write, and whether the storage marks the user
        dirty in the same transaction (:class:`~app.store.types.Admission`)."""

    async def release(self, conn: AsyncConnection, source: str, user_id: str) -> None:
        """The user is being deleted."""

    async def view(
        self, conn: AsyncConnection, source: str, user_ids: list[str]
    ) -> dict[str, dict[str, Any]]:
        """Server-managed attributes to show on each user: its :data:`~app.constants.STATUS_EXTENSION`."""


_STATUS_URN = STATUS_EXTENSION.lower()
_STATUS_KEYS = frozenset(name.lower() for name in STATUS_ATTRIBUTES)


class SqlStorage(AsyncScimStorage):
    """Users and Groups of one source, in SQLite or PostgreSQL."""

    def __init__(
        self, db: Database, provider: ScimProvider, source: str, hooks: UserHooks | None = None
    ) -> None:
        self.db = db
        self.provider = provider
        self.source = source
        self.hooks = hooks
        self.dialect = Dialect(is_sqlite=db.is_sqlite)
        self.write = False
        """Whether the request served writes (its operation's transaction is then a write one)."""
        self.request_id: str | None = None
        self.operation_label: str | None = None
        self.touched: set[tuple[str, str]] = set()
        """The (source, user id) pairs this request marked dirty, woken once it commits."""
        self.fresh: set[tuple[str, str]] = set()
        """The (source, user id) pairs this request marked whose converge creates their identity: the users
        it created, and members it changed that have no identity yet (their source's ``create_settle``
        holds them anyway, see :meth:`_note_identityless`)."""
        self._read: _Read | None = None
        """What :meth:`get` last read in a write transaction, for the write that follows
        (:meth:`_read_before`)."""

    def bound(self, *, write: bool, request_id: str | None, operation: str | None) -> SqlStorage:
        """This storage for one request: what it marks dirty is recorded with the request's id and
        operation (the audit log shows them) and collected in :attr:`touched`."""
        storage = copy.copy(self)
        storage.write = write
        storage.request_id = request_id
        storage.operation_label = operation
        storage.touched = set()
        storage.fresh = set()
        storage._read = None
        return storage

    # -- helpers ------------------------------------------------------------------------------

    def _model(self, resource_type: ResourceType | str) -> type[Resource[Any]]:
        name = resource_type if isinstance(resource_type, str) else resource_type.name
        for candidate in self.provider.resource_types:
            if candidate.name == name:
                return self.provider.model_for(candidate)  # type: ignore[return-value]
        raise NotFoundException(detail=f"Unknown resource type {name}")

    def operation(self) -> Any:
        return self._operation()

    @asynccontextmanager
    async def _operation(self) -> AsyncIterator[None]:
        async with self.db.transaction(write=self.write):
            yield

    async def _row(self, conn: AsyncConnection, resource_type: str, resource_id: str) -> Row[Any]:
        query = _ROW_LOCKED if self.db.locks(conn) else _ROW
        parameters = {"row_source": self.source, "row_type": resource_type, "row_id": resource_id}
        row = (await conn.execute(query, parameters)).first()
        if row is None:
            raise NotFoundException(detail=f"{resource_type} {resource_id} not found")
        return row

    async def _user_row(
        self, conn: AsyncConnection, resource_id: str, *, record: bool = False
    ) -> tuple[Row[Any], dict[int, list[dict[str, Any]]]]:
        """A user's row and its groups (as :meth:`_groups` gives them), read in one statement; ``record``
        (SQLite): with its provisioning record's :data:`~app.store.provisioning.SETTLED_COLUMNS`."""
        query = _USER_ROW_RECORD if record else _USER_ROW[(self.db.is_sqlite, self.db.locks(conn))]
        parameters = {"row_source": self.source, "row_type": "User", "row_id": resource_id}
        row = (await conn.execute(query, parameters)).first()
        if row is None:
            raise NotFoundException(detail=f"User {resource_id} not found")
        return row, {row.pk: _group_entries(row.groups_json)}

    @staticmethod
    def _check_version(row: Row[Any], expected_version: str | None) -> None:
        if expected_version is not None and etag(row.version) != expected_version:
            raise PreconditionFailedException(detail="The resource changed since the version given")

    @staticmethod
    def _document(resource: Resource[Any]) -> dict[str, Any]:
        document = resource.model_dump(mode="json")
        for key in ("id", "meta", "members", "groups", *NEVER_STORED):
            document.pop(key, None)
        # The status is computed, never stored (RFC 7643 §2.2 readOnly), nor its attributes where earlier
        # versions showed them (the SCIM service drops both from requests; this holds for any writer).
        document.pop(STATUS_EXTENSION, None)
        if isinstance(document.get("schemas"), list):
            document["schemas"] = [urn for urn in document["schemas"] if str(urn).lower() != _STATUS_URN]
        extension = document.get(ZITI_EXTENSION)
        if isinstance(extension, dict):
            document[ZITI_EXTENSION] = {k: v for k, v in extension.items() if k.lower() not in _STATUS_KEYS}
        return _compact(document)

    @staticmethod
    def _columns(resource_type: str, document: dict[str, Any]) -> dict[str, Any]:
        user_name = document.get("userName")
        display_name = document.get("displayName")
        _check_indexed_lengths(document)
        return {
            "user_name_ci": fold(user_name)
            if isinstance(user_name, str) and resource_type == "User"
            else None,
            "display_name_ci": fold(display_name) if isinstance(display_name, str) else None,
            "external_id": document.get("externalId"),
            "data": document,
        }

    def _statement_guard(self, conn: AsyncConnection) -> AbstractAsyncContextManager[Any]:
        """A savepoint around a statement that may break a constraint, on PostgreSQL, where the failure
        aborts the whole transaction; SQLite undoes only the failed statement, and the savepoint's two
        extra statements are a fifth of a user write there."""
        return nullcontext() if self.db.is_sqlite else conn.begin_nested()

    def _insert(self, table: Any) -> Any:
        return self.db.upsert(table)

    async def mark_dirty(self, conn: AsyncConnection, user_ids: Iterable[str] | Select[Any]) -> list[str]:
        """Record that these users' identities must be (re)converged: an upsert in the same transaction.
        Returns the ids marked."""
        if isinstance(user_ids, Select):
            user_ids = [str(row[0]) for row in await conn.execute(user_ids)]
        ids = await queue.mark(
            conn, self.source, user_ids, request_id=self.request_id, operation=self.operation_label
        )
        self.touched.update((self.source, user_id) for user_id in ids)
        return ids

    async def _note_identityless(self, hooks: UserHooks, conn: AsyncConnection, user_ids: list[str]) -> None:
        """Add to :attr:`fresh` those of these users who have no identity yet (their converge creates it):
        no ``identityId`` in their status (``hooks.view``).

        An initial sync's group PATCHes change the groups of users still waiting for their source to pause
        (``create_settle``): waking the worker for them would only make it look at the queue and find
        nothing due, one look per PATCH, each over every user still settling.
        """
        shown = await hooks.view(conn, self.source, user_ids)
        identityless = [user_id for user_id in user_ids if "identityId" not in shown.get(user_id, {})]
        self.fresh.update((self.source, user_id) for user_id in identityless)

    # -- reading ------------------------------------------------------------------------------

    async def _members(
        self, conn: AsyncConnection, group_pks: Sequence[int]
    ) -> dict[int, list[dict[str, Any]]]:
        found: dict[int, list[dict[str, Any]]] = {pk: [] for pk in group_pks}
        member = _MEMBER
        for start in range(0, len(group_pks), CHUNK):
            query = (
                select(members.c.group_pk, member.c.id, member.c.resource_type, members.c.display)
                .join(member, member.c.pk == members.c.member_pk)
                .where(members.c.group_pk.in_(group_pks[start : start + CHUNK]))
                .order_by(members.c.group_pk, members.c.member_pk)
            )
            for group_pk, member_id, member_type, display in await conn.execute(query):
                entry = {"value": member_id, "$ref": f"{member_type}s/{member_id}", "type": member_type}
                if display is not None:
                    entry["display"] = display
                found[group_pk].append(entry)
        return found

    async def _groups(
        self, conn: AsyncConnection, user_pks: Sequence[int]
    ) -> dict[int, list[dict[str, Any]]]:
        found: dict[int, list[dict[str, Any]]] = {pk: [] for pk in user_pks}
        for start in range(0, len(user_pks), CHUNK):
            parameters = {"member_pks": list(user_pks[start : start + CHUNK])}
            for user_pk, group_id, data in await conn.execute(_USER_GROUPS, parameters):
                found[user_pk].append(_group_entry(group_id, data.get("displayName")))
        return found

    @staticmethod
    def _wants(response_parameters: ResponseParameters[Any] | None, attribute: str) -> bool:
        """Whether a response keeps ``attribute``, so that large member lists are loaded only when needed."""
        if response_parameters is None:
            return True
        name = attribute.lower()
        if response_parameters.attributes:
            return any(
                str(path).lower().split(".")[0].split(":")[-1] == name
                for path in response_parameters.attributes
            )
        if response_parameters.excluded_attributes:
            return not any(str(path).lower() == name for path in response_parameters.excluded_attributes)
        return True

    async def _documents(
        self,
        conn: AsyncConnection,
        rows: Sequence[Row[Any] | Stored],
        wants_refs: bool = True,
        known_groups: dict[int, list[dict[str, Any]]] | None = None,
        known_views: dict[str, dict[str, Any]] | None = None,
        views: bool = True,
    ) -> list[dict[str, Any]]:
        """The documents of stored rows as a resource model reads them (``id``, ``meta``, member or group
        references, status); ``known_groups``: the users' groups when the caller has read them;
        ``known_views``: the users' status views when the caller knows them (a create); ``views``
        False: without the status of the users whose view is not known."""
        groups = [row.pk for row in rows if row.resource_type == "Group"]
        users = [row.pk for row in rows if row.resource_type == "User"]
        group_members = await self._members(conn, groups) if wants_refs and groups else {}
        user_groups = known_groups
        if user_groups is None:
            user_groups = await self._groups(conn, users) if wants_refs and users else {}
        managed: dict[str, dict[str, Any]] = dict(known_views or {})
        unknown = [row.id for row in rows if row.resource_type == "User" and row.id not in managed]
        if self.hooks is not None and unknown and views:
            managed.update(await self.hooks.view(conn, self.source, unknown))
        result = []
        for row in rows:
            document = dict(row.data)
            document["id"] = row.id
            document["meta"] = {
                "resourceType": row.resource_type,
                "created": row.created,
                "lastModified": row.last_modified,
                "version": etag(row.version),
            }
            refs = group_members.get(row.pk) if row.resource_type == "Group" else user_groups.get(row.pk)
            if refs:
                document["members" if row.resource_type == "Group" else "groups"] = refs
            if row.id in managed:
                _show_status(document, managed[row.id])
            result.append(document)
        return result

    async def resource_of(self, document: dict[str, Any]) -> Resource[Any]:
        """The model of a document of :meth:`_documents` (a big group's validated in a worker thread)."""
        model = self._model(document["meta"]["resourceType"])
        refs = document.get("members") or document.get("groups") or ()
        if len(refs) > OFF_LOOP_REFS:  # a big group: seconds of validation, not on the event loop
            return await off_loop(model.model_validate, document)
        return model.model_validate(document)

    async def get(
        self,
        resource_type: ResourceType,
        resource_id: str,
        *,
        response_parameters: ResponseParameters[Any] | None = None,
        answer: bool = False,
        views: bool = True,
    ) -> Any:
        """The resource's model; ``answer``: its document (:meth:`_documents`), to be answered as it is.

        ``views`` False: a read to be changed (PATCH, PUT), without the user's status, which the write's
        admission gives (:meth:`unchanged` adds it when the write changes nothing)."""
        name = str(resource_type.name)
        async with self.db.transaction() as conn:
            if name == "User":
                self.db.on_loop(conn)
            wants = self._wants(response_parameters, "members" if name == "Group" else "groups")
            writing = bool(conn.info.get(WRITE))
            # Read to be changed on SQLite, where the write transaction holds the only writer's turn: the
            # record read now is the record the write's admission would read (UserHooks.admit).
            with_record = name == "User" and wants and writing and not views
            with_record = with_record and self.hooks is not None and self.db.is_sqlite
            known: dict[int, list[dict[str, Any]]] | None = None
            if name == "User" and wants:
                row, known = await self._user_row(conn, resource_id, record=with_record)
            else:
                row = await self._row(conn, name, resource_id)
            (document,) = await self._documents(conn, [row], wants, known_groups=known, views=views)
            if writing:
                # Read to be changed (PATCH, PUT) in this write transaction: its update uses these.
                record = RecordRead(provisioning.settled_of(row)) if with_record else None
                groups = known if self.db.is_sqlite else None
                self._read = _Read(_transaction_of(conn), row, groups, record, document)
            return document if answer else await self.resource_of(document)

    async def unchanged(self, resource_type: ResourceType, resource: Resource[Any]) -> dict[str, Any]:
        """The answer to a write that changed nothing: the document :meth:`get` read of ``resource`` in
        this write transaction, with the user's status (read now if that read left it out; the whole
        document is read again if it was not that read's)."""
        async with self.db.transaction() as conn:
            read = self._read_before(conn, str(resource.id))
            if read is None:
                return await self.get(resource_type, str(resource.id), answer=True)  # type: ignore[no-any-return]
            document = read.document
            shown = STATUS_EXTENSION in document
            if self.hooks is not None and document["meta"]["resourceType"] == "User" and not shown:
                view = (await self.hooks.view(conn, self.source, [document["id"]])).get(document["id"])
                if view is not None:
                    _show_status(document, view)
            return document

    def _read_before(self, conn: AsyncConnection, resource_id: str) -> _Read | None:
        """What :meth:`get` read of this resource in this write transaction: its row and document (and a
        user's groups and record).

        Nothing can have changed them since: SQLite's write transaction holds the only writer's turn, and
        PostgreSQL's read locked the row (``FOR UPDATE``); the groups and the record are reused on SQLite
        only (a membership, a record is another row). Each read serves one update, and any other write
        forgets it.
        """
        read, self._read = self._read, None
        if read is None or read.transaction is not _transaction_of(conn) or read.row.id != resource_id:
            return None
        return read

    async def search(
        self,
        resource_types: list[ResourceType],
        search_request: SearchRequest[Any],
        *,
        position: Any = None,
        answer: bool = False,
    ) -> SearchPage:
        """A page of resources (models; ``answer``: their documents, to be answered as they are)."""
        models = {str(resource_type.name): self._model(resource_type) for resource_type in resource_types}
        scim_filter = search_request.filter.ast if search_request.filter is not None else None
        condition = and_(
            resources.c.source == self.source, where_clause(scim_filter, models, resources, self.dialect)
        )
        async with self.db.transaction() as conn:
            keyed = by_key(scim_filter, models)
            if keyed:
                self.db.on_loop(conn)

            async def counted() -> int:
                statement = select(func.count()).select_from(resources).where(condition)
                return int((await conn.execute(statement)).scalar_one())

            count = search_request.count
            start = search_request.start_index_0 or 0
            if count == 0 or start > MAX_OFFSET:
                # Only the total (RFC 7644 §3.4.2.4: a page past the end is empty; OFFSET fits in int64).
                return SearchPage(total=await counted(), resources=[])
            query = select(resources).where(condition)
            if keyed:  # users by key, a row or a few: their groups come with them (see _groups_json)
                query = query.add_columns(_GROUPS_JSON[self.db.is_sqlite])
            if search_request.sort_by:
                query = query.order_by(*self._ordering(search_request, models))
            query = query.order_by(resources.c.pk)
            if start:
                query = query.offset(start)
            if count is not None:
                query = query.limit(count)
            rows = (await conn.execute(query)).all()
            # A page that is not full and starts within the results ends them: its end is the total, and
            # the COUNT (a second statement, as costly as the lookup) is not needed; the same transaction
            # reads both, so they agree.
            ends = (count is None or len(rows) < count) and (rows or not start)
            total = start + len(rows) if ends else await counted()
            known = {row.pk: _group_entries(row.groups_json) for row in rows} if keyed else None
            documents = await self._documents(conn, rows, known_groups=known)
            if answer:
                return SearchPage(total=total, resources=documents)  # type: ignore[arg-type]
            return SearchPage(total=total, resources=[await self.resource_of(d) for d in documents])

    def _ordering(
        self, search_request: SearchRequest[Any], models: dict[str, type[Resource[Any]]]
    ) -> list[Any]:
        keys: list[tuple[str, ColumnElement[Any]]] = []
        for name, model in models.items():
            key = Translator(model, resources, self.dialect).sort_key(search_request.sort_binding(model))
            if key is not None:
                keys.append((name, key))
        if not keys:
            return []
        if len(models) == 1:
            value = keys[0][1]
        else:
            from sqlalchemy import case

            value = case(*[(resources.c.resource_type == name, key) for name, key in keys], else_=None)
        missing = value.is_(None)
        if search_request.sort_order == SearchRequest.SortOrder.descending:
            return [missing.desc(), value.desc()]
        return [missing.asc(), value.asc()]

    # -- writing ------------------------------------------------------------------------------

    async def _resolve_members(
        self, conn: AsyncConnection, values: list[dict[str, Any]]
    ) -> dict[int, str | None]:
        """Map the members a client gave to the rows they designate (same source), or refuse."""
        wanted = {str(member["value"]): member.get("display") for member in values if member.get("value")}
        ids = list(wanted)
        found = await self._lookup(conn, ids)
        unknown = [member_id for member_id in ids if member_id not in found]
        if unknown:
            raise InvalidValueException(detail=f"members: no User or Group with id {unknown[0]!r}")
        return {found[member_id]: display for member_id, display in wanted.items()}

    async def _lookup(self, conn: AsyncConnection, ids: list[str]) -> dict[str, int]:
        """The pks of the resources of this source with these ids (unknown ids are left out).

        Selected by id alone, the source checked here: with ``source = ?`` in the query, SQLite's planner
        (without statistics) prefers the ``(source, …)`` indexes for more than two ids and scans every
        resource of the source, O(directory) per lookup instead of one unique-index probe per id.
        """
        found: dict[str, int] = {}
        for start in range(0, len(ids), CHUNK):
            query = select(resources.c.id, resources.c.pk, resources.c.source).where(
                resources.c.id.in_(ids[start : start + CHUNK])
            )
            found.update({row.id: row.pk for row in await conn.execute(query) if row.source == self.source})
        return found

    async def _existing_members(self, conn: AsyncConnection, group_pk: int, pks: list[int]) -> set[int]:
        existing: set[int] = set()
        for start in range(0, len(pks), CHUNK):
            query = select(members.c.member_pk).where(
                members.c.group_pk == group_pk, members.c.member_pk.in_(pks[start : start + CHUNK])
            )
            existing.update(row.member_pk for row in await conn.execute(query))
        return existing

    async def _delete_members(self, conn: AsyncConnection, group_pk: int, pks: list[int]) -> set[int]:
        present = await self._existing_members(conn, group_pk, pks)
        gone = list(present)
        for start in range(0, len(gone), CHUNK):
            await conn.execute(
                delete(members).where(
                    members.c.group_pk == group_pk, members.c.member_pk.in_(gone[start : start + CHUNK])
                )
            )
        return present

    async def _write_members(
        self, conn: AsyncConnection, group_pk: int, wanted: dict[int, str | None], replace: bool
    ) -> set[int]:
        """Make the group's member rows equal to ``wanted``; return the member pks that changed."""
        current: dict[int, str | None] = {}
        if replace:
            query = select(members.c.member_pk, members.c.display).where(members.c.group_pk == group_pk)
            current = {row.member_pk: row.display for row in await conn.execute(query)}
        removed = [pk for pk in current if pk not in wanted]
        added = [pk for pk in wanted if pk not in current]
        await self._delete_members(conn, group_pk, removed)
        if added:
            await conn.execute(
                insert(members),
                [{"group_pk": group_pk, "member_pk": pk, "display": wanted[pk]} for pk in added],
            )
        for pk, display in wanted.items():
            if pk in current and current[pk] != display:
                await conn.execute(
                    update(members)
                    .where(members.c.group_pk == group_pk, members.c.member_pk == pk)
                    .values(display=display)
                )
        return {*removed, *added}

    async def _write_emails(
        self, conn: AsyncConnection, owner_pk: int, document: dict[str, Any], *, fresh: bool = False
    ) -> None:
        """Make the user's rows of the ``emails`` lookup table match ``document`` (``fresh``: it has none)."""
        if not fresh:
            await conn.execute(delete(emails).where(emails.c.owner_pk == owner_pk))
        values = _email_keys(document)
        if values:
            await conn.execute(
                insert(emails), [{"owner_pk": owner_pk, "value_ci": value} for value in values]
            )

    def _user_ids_of(self, member_pks: Iterable[int]) -> Select[Any]:
        pks = list(member_pks)
        return select(resources.c.id).where(resources.c.pk.in_(pks), resources.c.resource_type == "User")

    async def _mark_members(self, conn: AsyncConnection, member_pks: Iterable[int]) -> None:
        pks = list(member_pks)
        for start in range(0, len(pks), CHUNK):
            marked = await self.mark_dirty(conn, self._user_ids_of(pks[start : start + CHUNK]))
            if self.hooks is not None:
                await self._note_identityless(self.hooks, conn, marked)

    async def create(
        self, resource_type: ResourceType, resource: Resource[Any], *, answer: bool = False
    ) -> Any:
        """Store a new resource; return its model (``answer``: its document, to be answered as it is)."""
        self._read = None
        name = str(resource_type.name)
        document = self._document(resource)
        now = now_iso()
        resource_id = str(uuid.uuid4())
        known_views: dict[str, dict[str, Any]] | None = None
        async with self.db.transaction(write=True) as conn:
            if name == "User":
                self.db.on_loop(conn)
            try:
                async with self._statement_guard(conn):
                    result = await conn.execute(
                        _INSERT,
                        {
                            "source": self.source,
                            "resource_type": name,
                            "id": resource_id,
                            "created": now,
                            "last_modified": now,
                            "version": 1,
                            **self._columns(name, document),
                        },
                    )
            except IntegrityError as error:
                raise UniquenessException(detail="userName is already taken") from error
            pk = result.inserted_primary_key[0]  # type: ignore[index]
            member_values = getattr(resource, "members", None)
            if name == "Group" and member_values:
                wanted = await self._resolve_members(conn, [m.model_dump(mode="json") for m in member_values])
                await self._write_members(conn, pk, wanted, replace=False)
                await self._mark_members(conn, wanted)
            if name == "User":
                await self._write_emails(conn, pk, document, fresh=True)
                admission = Admission(None)
                if self.hooks is not None:
                    admission = await self.hooks.admit(conn, self.source, resource_id, document, [])
                    if admission.view is not None:
                        known_views = {resource_id: admission.view}
                if admission.converge:
                    await self.mark_dirty(conn, [resource_id])
                self.fresh.add((self.source, resource_id))
            # Answered from what was written: re-reading the row would return the same values.
            stored = Stored(pk, name, resource_id, document, now, now, 1)
            (created,) = await self._documents(
                conn, [stored], wants_refs=name == "Group", known_views=known_views
            )
            return created if answer else await self.resource_of(created)

    async def update(
        self,
        resource_type: ResourceType,
        resource: Resource[Any],
        *,
        expected_version: str | None = None,
        answer: bool = False,
    ) -> Any:
        """Store a resource's new state; return its model (``answer``: its document, answered as it is)."""
        name = str(resource_type.name)
        if resource.id is None:
            raise NotFoundException(detail="The resource has no id")
        document = self._document(resource)
        async with self.db.transaction(write=True) as conn:
            if name == "User":
                self.db.on_loop(conn)
            read = self._read_before(conn, resource.id)
            if read is not None and read.row.resource_type == name:
                row, read_groups, record = read.row, read.groups, read.record
            else:
                row, read_groups, record = await self._row(conn, name, resource.id), None, None
            self._check_version(row, expected_version)
            modified = now_iso()
            try:
                async with self._statement_guard(conn):
                    parameters = {f"u_{key}": value for key, value in self._columns(name, document).items()}
                    parameters.update(u_pk=row.pk, u_version=row.version + 1, u_last_modified=modified)
                    await conn.execute(_UPDATE, parameters)
            except IntegrityError as error:
                raise UniquenessException(detail="userName is already taken") from error
            if name == "Group":
                given = [m.model_dump(mode="json") for m in getattr(resource, "members", None) or []]
                wanted = await self._resolve_members(conn, given)
                changed = await self._write_members(conn, row.pk, wanted, replace=True)
                renamed = row.data.get("displayName") != document.get("displayName") or (
                    row.external_id != document.get("externalId")
                )
                await self._mark_members(conn, set(wanted) | changed if renamed else changed)
            known: dict[int, list[dict[str, Any]]] | None = read_groups
            known_views: dict[str, dict[str, Any]] | None = None
            if name == "User":
                if _email_keys(row.data) != _email_keys(document):
                    await self._write_emails(conn, row.pk, document)
                admission = Admission(None)
                if self.hooks is not None:
                    known = known if known is not None else await self._groups(conn, [row.pk])
                    groups = known[row.pk]
                    admission = await self.hooks.admit(
                        conn, self.source, resource.id, document, groups, before=row.data, record=record
                    )
                    if admission.view is not None:
                        known_views = {resource.id: admission.view}
                if admission.converge:
                    await self.mark_dirty(conn, [resource.id])
            # Answered from what was written: re-reading the row would return the same values.
            stored = Stored(row.pk, name, resource.id, document, row.created, modified, row.version + 1)
            (updated,) = await self._documents(conn, [stored], known_groups=known, known_views=known_views)
            return updated if answer else await self.resource_of(updated)

    async def change_members(
        self,
        group_id: str,
        *,
        add: list[dict[str, Any]],
        remove: list[str],
        replace_all: bool,
        document: dict[str, Any] | None,
        expected_version: str | None,
        withdrawn: Collection[str] = (),
    ) -> int:
        """Apply a membership delta to a group without loading its members (the fast PATCH path).

        ``remove`` goes first, then ``add`` but for ``withdrawn`` (members the request added and then
        removed: checked like every added member, not written). ``document`` replaces the group's other
        attributes when given. Returns the new version.
        """
        self._read = None
        async with self.db.transaction(write=True) as conn:
            row = await self._row(conn, "Group", group_id)
            self._check_version(row, expected_version)
            changed: set[int] = set()
            if replace_all:
                changed |= await self._write_members(
                    conn, row.pk, await self._resolve_members(conn, add), True
                )
            else:
                if remove:
                    # Removing a non-member is a no-op, so that IdP retries are idempotent.
                    gone = await self._lookup(conn, remove)
                    changed |= await self._delete_members(conn, row.pk, list(gone.values()))
                if add:
                    wanted = await self._resolve_members(conn, add)
                    if withdrawn:
                        for pk in (await self._lookup(conn, list(withdrawn))).values():
                            wanted.pop(pk, None)
                    existing = await self._existing_members(conn, row.pk, list(wanted))
                    new = {pk: display for pk, display in wanted.items() if pk not in existing}
                    if new:
                        await conn.execute(
                            insert(members),
                            [{"group_pk": row.pk, "member_pk": pk, "display": d} for pk, d in new.items()],
                        )
                    changed |= set(new)
            values: dict[str, Any] = {"version": row.version + 1, "last_modified": now_iso()}
            renamed = False
            if document is not None:
                values.update(self._columns("Group", document))
                renamed = row.data.get("displayName") != document.get("displayName") or (
                    row.external_id != document.get("externalId")
                )
            if not changed and not renamed and (document is None or document == row.data):
                return int(row.version)
            await conn.execute(update(resources).where(resources.c.pk == row.pk).values(**values))
            if renamed:
                await self.mark_dirty(
                    conn,
                    select(resources.c.id)
                    .join(members, members.c.member_pk == resources.c.pk)
                    .where(members.c.group_pk == row.pk, resources.c.resource_type == "User"),
                )
            else:
                await self._mark_members(conn, changed)
            return int(row.version) + 1

    async def delete(
        self,
        resource_type: ResourceType,
        resource_id: str,
        *,
        expected_version: str | None = None,
    ) -> None:
        name = str(resource_type.name)
        self._read = None
        async with self.db.transaction(write=True) as conn:
            row = await self._row(conn, name, resource_id)
            self._check_version(row, expected_version)
            if name == "Group":
                await self.mark_dirty(
                    conn,
                    select(resources.c.id)
                    .join(members, members.c.member_pk == resources.c.pk)
                    .where(members.c.group_pk == row.pk, resources.c.resource_type == "User"),
                )
            else:
                if self.hooks is not None:
                    await self.hooks.release(conn, self.source, resource_id)
                await self.mark_dirty(conn, [resource_id])
            # A member that disappears changes its groups (RFC 7644 §3.6: removed from every group).
            await conn.execute(
                update(resources)
                .where(resources.c.pk.in_(select(members.c.group_pk).where(members.c.member_pk == row.pk)))
                .values(version=resources.c.version + 1, last_modified=now_iso())
            )
            await conn.execute(delete(resources).where(resources.c.pk == row.pk))
