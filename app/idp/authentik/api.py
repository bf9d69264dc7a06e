"""Read users and groups back from authentik's REST API when a webhook only named them, and for the pull.

``GET {base}/api/v3/core/users/{pk}/`` with ``Authorization: Bearer <API token>`` returns the
``UserSerializer`` JSON (``pk, username, name, is_active, email, groups_obj[{pk,name}], uid, type, …``);
``GET …/core/groups/{pk}/`` the ``GroupSerializer`` (``pk, name, users[<user pk>], …``); the lists
``GET …/core/users/?page=N`` and ``…/core/groups/?page=N`` page with ``pagination.next`` (0 at the end).

A 404 is **not** proof of a deletion: authentik answers 404 for an object the token's user may not see
(object-level permissions, ``authentik/rbac``). It counts as "deleted" only when the token is proven to
see every user: ``GET …/core/users/me/`` says ``is_superuser`` (checked once, then remembered). Otherwise
the 404 is ignored and only a ``model_deleted`` event deletes; ``ziti-scim doctor`` reports such a
token (:meth:`AuthentikUserFetcher.sees_everything`).
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from app.idp.authentik.webhook import group_pk, user_events
from app.webhooks.errors import IdpFetchError, WebhookInvalid
from app.webhooks.events import (
    FetchGroup,
    FetchUser,
    GroupDelete,
    GroupSnapshot,
    Ignored,
    UserDelete,
    WebhookEvent,
)

__all__ = ["AuthentikUserFetcher", "IdpFetchError", "group_snapshot"]

_PK = re.compile(r"[0-9]{1,20}")
_GROUP_PK = re.compile(r"[0-9a-fA-F-]{32,36}")
_PAGE_SIZE = 100
_MAX_PAGES = 10_000


class AuthentikUserFetcher:
    """Resolves :class:`FetchUser` events against authentik's API.

    Pass a shared ``client`` to reuse connections; otherwise one is created and closed by :meth:`aclose`.
    """

    def __init__(
        self,
        base_url: str,
        api_token: str,
        *,
        client: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("AuthentikUserFetcher: base_url must be an http(s) URL")
        if not api_token:
            raise ValueError("AuthentikUserFetcher: api_token is required")
        self._base = base_url.rstrip("/")
        self._token = api_token
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._timeout = timeout
        self._sees_everything: bool | None = None

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()

    async def _get(self, path: str, params: dict[str, str] | None = None) -> httpx.Response:
        try:
            response = await self._client.get(
                f"{self._base}{path}",
                params=params,
                headers={"Authorization": f"Bearer {self._token}", "Accept": "application/json"},
                timeout=self._timeout,
            )
        except httpx.HTTPError as exc:
            raise IdpFetchError(f"authentik API unreachable ({type(exc).__name__})") from None
        if response.status_code in (401, 403):
            raise IdpFetchError(f"authentik API refused the token (HTTP {response.status_code})")
        return response

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        if response.status_code != 200:
            raise IdpFetchError(f"authentik API answered HTTP {response.status_code}")
        try:
            return response.json()
        except ValueError:
            raise IdpFetchError("authentik API answered non-JSON") from None

    async def sees_everything(self) -> bool:
        """True when the token's user is a superuser (sees every user and group); remembered once known."""
        if self._sees_everything is None:
            data = self._json(await self._get("/api/v3/core/users/me/"))
            user = data.get("user") if isinstance(data, dict) else None
            self._sees_everything = isinstance(user, dict) and user.get("is_superuser") is True
        return self._sees_everything

    async def _gone(self, response: httpx.Response, what: str, deleted: WebhookEvent) -> WebhookEvent | None:
        """``deleted`` for a 404 the token's view proves, an ``Ignored`` for an unproven one, else None."""
        if response.status_code != 404 or not _is_json(response):
            return None
        if await self.sees_everything():
            return deleted
        return Ignored(f"authentik answered 404 for {what}, but the token may not see it: nothing deleted")

    async def fetch(self, pk: str) -> tuple[WebhookEvent, ...]:
        """``(UserUpsert, UserGroups)`` for an existing user; see the module docstring for a 404."""
        if not _PK.fullmatch(pk):
            raise IdpFetchError("authentik user pk must be numeric")
        response = await self._get(f"/api/v3/core/users/{pk}/")
        if (gone := await self._gone(response, f"user {pk}", UserDelete(pk))) is not None:
            return (gone,)
        data = self._json(response)
        if not isinstance(data, dict) or str(data.get("pk")) != pk:
            raise IdpFetchError("authentik API answered an unexpected user object")
        try:
            return user_events(data)
        except WebhookInvalid as exc:
            raise IdpFetchError(f"authentik user object unusable: {exc.reason}") from None

    async def resolve(self, event: FetchUser) -> tuple[WebhookEvent, ...]:
        """Replace a :class:`FetchUser` by what the API says about that user."""
        return await self.fetch(event.source_user_id)

    async def resolve_group(self, event: FetchGroup) -> tuple[WebhookEvent, ...]:
        """Replace a :class:`FetchGroup` by the group's name and members as the API says."""
        pk = event.group_id
        if not _GROUP_PK.fullmatch(pk):
            raise IdpFetchError("authentik group pk must be a UUID")
        response = await self._get(f"/api/v3/core/groups/{pk}/")
        if (gone := await self._gone(response, f"group {pk}", GroupDelete(pk))) is not None:
            return (gone,)
        return (group_snapshot(self._json(response)),)

    async def _pages(self, path: str, extra: dict[str, str] | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        page = 1
        for _ in range(_MAX_PAGES):
            params = {"page": str(page), "page_size": str(_PAGE_SIZE), **(extra or {})}
            data = self._json(await self._get(path, params))
            results = data.get("results") if isinstance(data, dict) else None
            if not isinstance(results, list):
                raise IdpFetchError("authentik API answered an unexpected list")
            items += [item for item in results if isinstance(item, dict)]
            following = (data.get("pagination") or {}).get("next")
            if not isinstance(following, int) or isinstance(following, bool) or following <= page:
                return items
            page = following
        raise IdpFetchError("authentik API list did not end")

    async def list_users(self) -> list[dict[str, Any]]:
        """Every user the token sees (all pages), as ``UserSerializer`` objects."""
        return await self._pages("/api/v3/core/users/")

    async def list_groups(self) -> list[dict[str, Any]]:
        """Every group the token sees (all pages), with their member pks."""
        return await self._pages("/api/v3/core/groups/", {"include_users": "true"})


def group_snapshot(data: Any) -> GroupSnapshot:
    """A :class:`GroupSnapshot` of a ``GroupSerializer`` object (``users``: member pks)."""
    if not isinstance(data, dict) or not all(isinstance(data.get(key), str) for key in ("pk", "name")):
        raise IdpFetchError("authentik API answered an unexpected group object")
    users = data.get("users")
    if not isinstance(users, list):
        users = [u.get("pk") for u in data.get("users_obj") or [] if isinstance(u, dict)]
    members = tuple(str(pk) for pk in users if isinstance(pk, int | str) and not isinstance(pk, bool))
    try:
        pk = group_pk(data["pk"])
    except WebhookInvalid:
        raise IdpFetchError("authentik API answered a group without a UUID pk") from None
    return GroupSnapshot(pk, data["name"], members)


def _is_json(response: httpx.Response) -> bool:
    content_type: str = response.headers.get("content-type", "")
    return content_type.split(";")[0].strip().endswith("json")
