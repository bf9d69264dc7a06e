"""The SCIM protocol service: scim2-server's sans-IO ``ScimService`` with ziti-scim's choices.

- PATCH answers ``200`` with the resource (RFC 7644 §3.5.2 allows 204; several clients and probes
  expect the resource).
- ``password`` is dropped from every payload before validation: it is never stored nor logged
  (Okta sends one; RFC 7643 §4.1.1 makes it writeOnly). So is the readOnly provisioning status a client
  sends back (:mod:`app.scim.status`).
- Every request does bounded work (:mod:`app.scim.limits`): PATCH operations and values per multi-valued
  attribute are capped, and runs of ``add`` operations are merged so a PATCH applies in linear time.
- The source's :class:`~app.scim.quirks.Quirks` normalise bodies and filters before validation, and a
  group PATCH answers 204 for the clients that expect it (Entra, Okta).
- A User is answered from its stored document (:meth:`ZitiScimService.answer`), without validating it
  into a model and dumping that model again: the document is the dump of a validated model, and no User
  attribute is ``returned: never`` or ``request`` (``schemas/Schemas.json``), so the round trip would
  give it back unchanged (``tests/scim/test_answers.py`` compares both). A response asking for
  ``attributes`` or ``excludedAttributes``, and every Group, still go through the model.
- Cursor pagination (RFC 9865) is not announced (``ServiceProviderConfig`` has no ``pagination``
  with ``cursor: true``), so a search with a ``cursor`` is a pagination error: ``400`` with
  ``scimType`` ``invalidCursor`` (RFC 9865 §2.1, "Pagination Errors"), not the ``501`` of an
  unsupported operation; the client pages with ``startIndex`` (RFC 7644 §3.4.2.4) instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from http import HTTPStatus
from typing import Any, TypeVar, cast

from pydantic import ValidationError
from scim2_models import (
    Context,
    InvalidCursorException,
    InvalidFilterException,
    InvalidValueException,
    ListResponse,
    PatchOp,
    Path,
    Reference,
    Resource,
    ResourceType,
    ResponseParameters,
    ScimProvider,
    SearchRequest,
)
from scim2_server.conditions import Conditions
from scim2_server.requests import ScimRequest
from scim2_server.responses import ScimResponse
from scim2_server.routing import Target
from scim2_server.routing import match as match_route
from scim2_server.service import ScimService, scim_exception_of
from scim2_server.storage import SearchPage
from scim2_server.utils import parametrize

from app.scim.limits import (
    RequestLimits,
    apply_linear,
    check_patch_body,
    check_patch_size,
    check_patched_values,
    check_resource_values,
    value_counts,
)
from app.scim.quirks import Quirks
from app.scim.status import without_status

LIST_RESPONSE = str(ListResponse.__schema__)
ANSWERED_AS_STORED = frozenset({"User"})
"""Resource types answered from their stored document (see the module docstring)."""

CURSOR_REFUSED = "Cursor pagination is not supported: page with startIndex and count (RFC 7644 §3.4.2.4)"
ModelT = TypeVar("ModelT")

_NEVER_ACCEPTED = frozenset({"password"})


def _without_secrets(payload: Any) -> Any:
    """Remove ``password`` from a resource body or a PatchOp body (case-insensitive, RFC 7643 §2.1)."""
    if not isinstance(payload, dict):
        return payload
    cleaned = {key: value for key, value in payload.items() if key.lower() not in _NEVER_ACCEPTED}
    operations_key = next((key for key in cleaned if key.lower() == "operations"), None)
    if operations_key is not None and isinstance(cleaned[operations_key], list):
        operations = []
        for operation in cleaned[operations_key]:
            if isinstance(operation, dict):
                path = operation.get("path")
                if isinstance(path, str) and path.rsplit(":", 1)[-1].lower() in _NEVER_ACCEPTED:
                    continue
                if isinstance(operation.get("value"), dict):
                    operation = {**operation, "value": _without_secrets(operation["value"])}
                    if not operation["value"] and operation.get("path") is None:
                        continue
            operations.append(operation)
        cleaned[operations_key] = operations
    return cleaned


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(key) or _has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


def _refuse_nul(payload: Any) -> Any:
    """NUL cannot be stored by PostgreSQL; refuse it on every database alike (RFC 7643 §2.3.1 strings)."""
    if _has_nul(payload):
        raise InvalidValueException(detail="Strings must not contain NUL (U+0000)")
    return payload


def _refuse_nul_in_filter(search_request: SearchRequest[Any]) -> None:
    """A filter value may spell NUL as the JSON escape ``\\u0000``: check the decoded values too."""
    if search_request.filter is not None and _has_nul(_filter_values(search_request.filter.ast)):
        raise InvalidFilterException(detail="Filter values must not contain NUL (U+0000)")


def _filter_values(node: Any) -> list[Any]:
    values: list[Any] = []
    for name in ("value", "val_filter", "expr"):
        child = getattr(node, name, None)
        if name == "value":
            values.append(child)
        elif child is not None:
            values.extend(_filter_values(child))
    for term in getattr(node, "terms", ()) or ():
        values.extend(_filter_values(term))
    return values


def _operations(payload: Any) -> Any:
    """The ``Operations`` list of a PatchOp body (the key is case-insensitive), or None."""
    if not isinstance(payload, dict):
        return None
    return next((value for key, value in payload.items() if key.lower() == "operations"), None)


class NothingToPatch(Exception):
    """A PATCH whose every operation was dropped (it only set ``password``): answer the resource unchanged."""


class ZitiScimService(ScimService):
    """ScimService with the response and payload rules above."""

    def __init__(
        self,
        provider: ScimProvider,
        quirks: Quirks | None = None,
        limits: RequestLimits | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(provider, **kwargs)
        self.quirks = quirks or Quirks()
        self.limits = limits or RequestLimits()
        self.known_schemas = frozenset(str(schema.id) for schema in provider.schemas)
        self._references_by_model: dict[type[Any], list[tuple[Any, str | None, Any]]] = {}
        self._references_by_type: dict[str, list[tuple[str | None, str, str | None]]] = {}
        self._endpoints = {
            str(resource_type.name): str(resource_type.endpoint or "").strip("/")
            for resource_type in provider.resource_types
        }
        self._by_endpoint: dict[str, ResourceType] = {}
        for resource_type in reversed(provider.resource_types):  # the first of a kind wins, as a scan's
            self._by_endpoint[(resource_type.endpoint or "").lstrip("/").casefold()] = resource_type

    @staticmethod
    def match(request: ScimRequest) -> Target:
        """scim2-server's route matching (a scan of every route), remembered for recent paths: a request
        is matched four times on its way (router, dispatch, handler, operation)."""
        return _matched(request.method.upper(), request.path)

    def get_resource_type_by_endpoint(self, endpoint: str) -> ResourceType | None:
        """scim2-server's lookup (the same case-insensitive comparison) as one dict access."""
        return self._by_endpoint.get(endpoint.lstrip("/").casefold())

    def normalize(self, model: type[Any], payload: Any, scim_ctx: Context | None = None) -> Any:
        """Apply the source's quirks to a decoded body validated next with ``model``."""
        if isinstance(model, type) and issubclass(model, PatchOp):
            return self.quirks.patch(payload)
        if isinstance(model, type) and issubclass(model, Resource):
            creating = scim_ctx == Context.RESOURCE_CREATION_REQUEST
            return self.quirks.resource(payload, str(model.__schema__), self.known_schemas, creating=creating)
        return payload

    def read_search_query(
        self, resource_types: list[ResourceType], query: Mapping[str, str]
    ) -> tuple[SearchRequest[Any], Any]:
        if "\x00" in "".join(query.values()):
            raise InvalidFilterException(detail="Query parameters must not contain NUL (U+0000)")
        if "cursor" in query:
            raise InvalidCursorException(detail=CURSOR_REFUSED)
        if "filter" in query:
            query = {**query, "filter": self.quirks.filter(query["filter"])}
        search_request, position = super().read_search_query(resource_types, query)
        _refuse_nul_in_filter(search_request)
        return search_request, position

    def read_search_body(
        self, resource_types: list[ResourceType], body: bytes, content_type: str | None
    ) -> Any:
        if b"cursor" in body.lower():  # decoded a second time only when it may name a cursor
            payload = self.decode_body(body, content_type)
            if isinstance(payload, dict) and any(key.lower() == "cursor" for key in payload):
                raise InvalidCursorException(detail=CURSOR_REFUSED)
        search_request, position = super().read_search_body(resource_types, body, content_type)
        _refuse_nul_in_filter(search_request)
        return search_request, position

    def read_patch(self, resource_type: Any, body: bytes, content_type: str | None) -> Any:
        """The body decoded once (:meth:`decode_patch`), then validated (:meth:`validate_patch`);
        scim2-server's read_patch would decode it a second time."""
        return self.validate_patch(resource_type, self.decode_patch(body, content_type))

    def decode_patch(self, body: bytes, content_type: str | None) -> Any:
        """A PATCH body decoded and checked against the limits, not validated yet."""
        self.ensure_patch_supported()
        check_patch_body(body, self.limits)
        payload = self.decode_body(body, content_type)
        check_patch_size(payload, self.limits)
        return payload

    def validate_patch(self, resource_type: Any, payload: Any) -> Any:
        """The PatchOp of a decoded body (:meth:`decode_patch`)."""
        model = parametrize(PatchOp, self.get_model(resource_type))
        return self.validate_payload(model, payload, Context.RESOURCE_PATCH_REQUEST)

    @staticmethod
    def patch_operation_count(payload: Any) -> int:
        operations = _operations(payload)
        return len(operations) if isinstance(operations, list) else 0

    def read_body(
        self, model: type[ModelT], body: bytes, content_type: str | None, scim_ctx: Context
    ) -> ModelT:
        return self.validate_payload(model, self.decode_body(body, content_type), scim_ctx)

    def validate_payload(self, model: type[ModelT], payload: Any, scim_ctx: Context) -> ModelT:
        """Validate a decoded body with ``model``: NUL refused, ``password`` dropped, the source's quirks
        applied, the value caps checked, then one scim2-models validation."""
        if isinstance(model, type) and issubclass(model, PatchOp):
            given = _operations(payload)
            kept = _operations(without_status(_without_secrets(payload)))
            if isinstance(given, list) and given and kept == []:
                raise NothingToPatch
        payload = self.normalize(model, without_status(_without_secrets(_refuse_nul(payload))), scim_ctx)
        if isinstance(model, type) and issubclass(model, Resource):
            check_resource_values(payload, self.limits)
        try:
            return model.model_validate(payload, scim_ctx=scim_ctx)  # type: ignore[attr-defined, no-any-return]
        except ValidationError as exception:
            raise scim_exception_of(exception) from exception
        except (TypeError, ValueError) as exception:
            raise InvalidValueException(detail=str(exception)) from exception

    def apply_patch(self, current: Any, patch_op: PatchOp[Any], conditions: Any) -> Any:
        """Apply a PATCH in linear time (:func:`~app.scim.limits.apply_linear`), then check the value caps.

        :return: The patched resource, or None when the PATCH changes nothing (as scim2-server's).
        """
        self.check_preconditions(current, "PATCH", conditions)
        before = value_counts(current)
        if not apply_linear(patch_op, current):
            return None
        check_patched_values(before, current, self.limits)
        return current

    def publish(self, base_url: str, resource: Resource[Any]) -> Resource[Any]:
        """scim2-server's publish, in place: :class:`~app.store.storage.SqlStorage` builds a new model on
        every read and write, used once for the response, so the deep copy (which an in-memory storage
        needs, to keep its own object unchanged) is not needed."""
        assert resource.meta is not None
        assert resource.id is not None
        update: dict[str, Any] = {
            "location": self.resource_location(base_url, self.get_resource_type_of(resource), resource.id)
        }
        if not self.etag_supported:
            update["version"] = None
        resource.meta = resource.meta.model_copy(update=update)
        self._publish_references(base_url, resource)
        return resource

    def _publish_references(self, base_url: str, resource: Resource[Any]) -> None:
        """scim2-server's reference publishing, with the reference attributes of each model found once
        (walking every path of a model with its extensions cost more than the rest of a GET)."""

        def locate(reference: Any) -> Any:
            if isinstance(reference, list):
                return [locate(item) for item in reference]
            if reference is None:
                return None
            return self.reference_location(base_url, reference)

        for path, sub_field, head in self._reference_paths(type(resource)):
            if sub_field is None:
                path.set(resource, locate(path.get(resource)), strict=False)
                continue
            entries = head.get(resource)
            for entry in entries if isinstance(entries, list) else [entries]:
                if entry is not None:
                    setattr(entry, sub_field, locate(getattr(entry, sub_field)))

    def _reference_paths(self, model: type[Any]) -> list[tuple[Any, str | None, Any]]:
        """(path, sub-attribute or None, path of the attribute holding it) of each reference to another
        resource in ``model``, as scim2-server's ``_publish_references`` selects them."""
        known = self._references_by_model.get(model)
        if known is not None:
            return known
        found: list[tuple[Any, str | None, Any]] = []
        for path in parametrize(Path, model).iter_paths(target_type=[Reference]):
            binding = path.resolve()
            assert binding is not None
            target_type = cast(type[Reference[Any]], binding.target_type)
            reference_types = set(target_type.__reference_types__)
            if not reference_types or reference_types & {"external", "uri"}:
                continue
            head = f"{path.schema}:{path.parts[0]}" if path.schema else path.parts[0]
            found.append((path, binding.sub_field_name, Path(head)))
        self._references_by_model[model] = found
        return found

    def patch_response(
        self, base_url: str, resource: Any, response_parameters: ResponseParameters[Any]
    ) -> ScimResponse:
        """The 200 with the patched resource (a model, or a stored document: :meth:`answer`)."""
        if isinstance(resource, dict):
            if self.answers_as_stored(resource, response_parameters):
                context = Context.RESOURCE_REPLACEMENT_RESPONSE
                return self.answer(base_url, resource, context, response_parameters)
            resource = self.model_of(resource)
        published = self.publish(base_url, resource)
        if (
            self.quirks.group_patch_no_content
            and published.meta is not None
            and published.meta.resource_type == "Group"
            and not response_parameters.attributes
            and not response_parameters.excluded_attributes
        ):
            headers = {"ETag": published.meta.version} if published.meta.version else {}
            return ScimResponse(HTTPStatus.NO_CONTENT, None, headers)
        return self.resource_response(published, Context.RESOURCE_REPLACEMENT_RESPONSE, response_parameters)

    # -- answering stored documents ------------------------------------------------------------

    @staticmethod
    def _projects(response_parameters: Any) -> bool:
        return response_parameters is not None and bool(
            response_parameters.attributes or response_parameters.excluded_attributes
        )

    def answers_as_stored(self, document: dict[str, Any], response_parameters: Any = None) -> bool:
        """Whether :meth:`published_document` gives what the model's round trip would (module docstring)."""
        return document["meta"]["resourceType"] in ANSWERED_AS_STORED and not self._projects(
            response_parameters
        )

    def model_of(self, document: dict[str, Any]) -> Resource[Any]:
        """A stored document (``SqlStorage._documents``) validated into its model."""
        model = self.get_model(self.get_resource_type(document["meta"]["resourceType"]))
        return model.model_validate(document)

    def published_document(self, base_url: str, document: dict[str, Any]) -> dict[str, Any]:
        """:meth:`publish` and the response dump of a stored document, on the document itself: its
        location set, its references to other resources made URLs (RFC 7643 §2.3.7, as
        :meth:`reference_location`), its version dropped when ETags are not supported."""
        meta = document["meta"]
        base = base_url.rstrip("/")
        published = {**document}
        location = f"{base}/{self._endpoints[meta['resourceType']]}/{document['id']}"
        published["meta"] = {
            "resourceType": meta["resourceType"],
            "created": _instant(meta["created"]),
            "lastModified": _instant(meta["lastModified"]),
            "location": location,
        }
        if self.etag_supported and meta.get("version"):
            published["meta"]["version"] = meta["version"]
        for schema, attribute, sub in self._document_references(meta["resourceType"]):
            holder = published if schema is None else published.get(schema)
            if not isinstance(holder, dict) or attribute not in holder:
                continue
            if schema is not None:
                holder = published[schema] = {**holder}
            value = holder[attribute]
            if isinstance(value, list):
                holder[attribute] = [self._located(base_url, entry, sub) for entry in value]
            else:
                holder[attribute] = self._located(base_url, value, sub)
        return published

    def _located(self, base_url: str, entry: Any, sub: str | None) -> Any:
        """A reference made a URL (:meth:`reference_location`); with ``sub``, a copy of the complex value
        whose ``sub`` is made one."""
        if sub is None:
            return self.reference_location(base_url, entry) if isinstance(entry, str) else entry
        if not isinstance(entry, dict) or not isinstance(entry.get(sub), str):
            return entry
        return {**entry, sub: self.reference_location(base_url, entry[sub])}

    def _document_references(self, resource_type: str) -> list[tuple[str | None, str, str | None]]:
        """(extension URN or None, attribute, sub-attribute) of each reference to another resource in a
        stored document of ``resource_type``: where :meth:`_publish_references` acts on the model."""
        known = self._references_by_type.get(resource_type)
        if known is None:
            with self.provider:
                model = self.get_model(self.get_resource_type(resource_type))
                paths = self._reference_paths(model)
            known = [(path.schema, path.parts[0], path.parts[1] if sub else None) for path, sub, _ in paths]
            self._references_by_type[resource_type] = known
        return known

    def answer(
        self,
        base_url: str,
        stored: dict[str, Any] | Resource[Any],
        scim_ctx: Context,
        response_parameters: ResponseParameters[Any] | None = None,
        status: HTTPStatus = HTTPStatus.OK,
    ) -> ScimResponse:
        """The response carrying a stored resource: a document (``SqlStorage``'s ``answer=True``) or a
        model; what scim2-server's ``resource_response(publish(...))`` answers."""
        if isinstance(stored, dict):
            if not self.answers_as_stored(stored, response_parameters):
                stored = self.model_of(stored)
            else:
                body = self.published_document(base_url, stored)
                headers = {"Content-Location": body["meta"]["location"]}
                if body["meta"].get("version"):
                    headers["ETag"] = body["meta"]["version"]
                return ScimResponse(status, body, headers)
        return self.resource_response(self.publish(base_url, stored), scim_ctx, response_parameters, status)

    def query_answer(
        self,
        base_url: str,
        stored: dict[str, Any] | Resource[Any],
        response_parameters: ResponseParameters[Any],
        conditions: Conditions,
    ) -> ScimResponse:
        """:meth:`query_response` of a stored document or a model."""
        if not isinstance(stored, dict) or not self.answers_as_stored(stored, response_parameters):
            resource = self.model_of(stored) if isinstance(stored, dict) else stored
            return self.query_response(base_url, resource, response_parameters, conditions)
        version = stored["meta"].get("version") if self.etag_supported else None
        if not conditions.check(version, "GET"):
            # RFC 9110 §15.4.5: a 304 carries the ETag a 200 would have
            return ScimResponse(HTTPStatus.NOT_MODIFIED, None, {"ETag": version} if version else {})
        return self.answer(base_url, stored, Context.RESOURCE_QUERY_RESPONSE, response_parameters)

    def search_response(
        self,
        base_url: str,
        resource_types: list[ResourceType],
        page: SearchPage,
        search_request: SearchRequest[Any],
    ) -> ScimResponse:
        """scim2-server's search response; a page of stored documents (``SqlStorage.search``'s
        ``answer=True``) that are all answered as stored is listed without models."""
        documents = cast(list[Any], page.resources)
        if documents and not all(isinstance(document, dict) for document in documents):
            return super().search_response(base_url, resource_types, page, search_request)
        if (
            search_request.cursor is not None
            or page.total is None
            or not all(self.answers_as_stored(document, search_request) for document in documents)
        ):
            page = SearchPage(
                total=page.total,
                resources=[self.model_of(document) for document in documents],
                next=page.next,
                previous=page.previous,
            )
            return super().search_response(base_url, resource_types, page, search_request)
        body: dict[str, Any] = {
            "schemas": [LIST_RESPONSE],
            "totalResults": page.total,
            "itemsPerPage": len(documents),
        }
        if search_request.start_index is not None:
            body["startIndex"] = search_request.start_index
        body["Resources"] = [self.published_document(base_url, document) for document in documents]
        return ScimResponse(HTTPStatus.OK, body, {})


@lru_cache(maxsize=256)
def _matched(method: str, path: str) -> Target:
    """A request's route (``Target`` is frozen: one instance may serve several requests); a path that
    matches no route raises each time (an exception is not remembered)."""
    return match_route(method, path)


def _instant(value: str) -> str:
    """A stored timestamp as the model dumps it: ``.000000`` microseconds are not written."""
    return value[:-8] + "Z" if value.endswith(".000000Z") else value
