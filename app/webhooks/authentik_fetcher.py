"""Read a user back from authentik's REST API when a webhook only carried its pk.

``GET {base}/api/v3/core/users/{pk}/`` with ``Authorization: Bearer <API token>`` returns the
``UserSerializer`` JSON (``pk, username, name, is_active, email, groups_obj[{name}], uid, type, …``);
404 means the user no longer exists.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from app.webhooks.authentik import user_events
from app.webhooks.errors import WebhookInvalid
from app.webhooks.events import FetchUser, UserDelete, WebhookEvent

__all__ = ["AuthentikUserFetcher", "IdpFetchError"]

_PK = re.compile(r"[0-9]{1,20}")


class IdpFetchError(Exception):
    """The IdP API could not be read (network, auth, unexpected answer). Retry later / reconcile.

    The message names the failure class only; it never contains the API token or response bodies.
    """


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

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()

    async def fetch(self, pk: str) -> tuple[WebhookEvent, ...]:
        """``(UserUpsert, UserGroups)`` for an existing user, ``(UserDelete,)`` if authentik says 404."""
        if not _PK.fullmatch(pk):
            raise IdpFetchError("authentik user pk must be numeric")
        url = f"{self._base}/api/v3/core/users/{pk}/"
        try:
            response = await self._client.get(
                url,
                headers={"Authorization": f"Bearer {self._token}", "Accept": "application/json"},
                timeout=self._timeout,
            )
        except httpx.HTTPError as exc:
            raise IdpFetchError(f"authentik API unreachable ({type(exc).__name__})") from None
        if response.status_code == 404 and _is_json(response):
            return (UserDelete(pk),)
        if response.status_code in (401, 403):
            raise IdpFetchError(f"authentik API refused the token (HTTP {response.status_code})")
        if response.status_code != 200:
            raise IdpFetchError(f"authentik API answered HTTP {response.status_code}")
        try:
            data: Any = response.json()
        except ValueError:
            raise IdpFetchError("authentik API answered non-JSON") from None
        if not isinstance(data, dict) or str(data.get("pk")) != pk:
            raise IdpFetchError("authentik API answered an unexpected user object")
        try:
            return user_events(data)
        except WebhookInvalid as exc:
            raise IdpFetchError(f"authentik user object unusable: {exc.reason}") from None

    async def resolve(self, event: FetchUser) -> tuple[WebhookEvent, ...]:
        """Replace a :class:`FetchUser` by what the API says about that user."""
        return await self.fetch(event.source_user_id)


def _is_json(response: httpx.Response) -> bool:
    content_type: str = response.headers.get("content-type", "")
    return content_type.split(";")[0].strip().endswith("json")
