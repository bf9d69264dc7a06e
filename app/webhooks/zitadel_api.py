"""Read users and grants back from ZITADEL's API with a personal access token (user service v2).

* ``GET /v2/users/{userId}`` (user service v2 ``GetUserByID``): ``{"details": {"sequence", …}, "user":
  {"userId", "state", "username", "human": {"profile": {"givenName", "familyName", "nickName",
  "displayName", "preferredLanguage"}, "email": {"email"}}}}``; 404 once the user is deleted.
* ``POST /v2/users`` (``ListUsers``) with ``{"query": {"offset", "limit", "asc"}}``: ``{"details":
  {"totalResult"}, "result": [user (with its own ``details``), …]}``.
* ``POST /management/v1/users/grants/_search`` (management v1 ``ListUserGrants``, deprecated but served):
  ``{"result": [{"id", "details", "userId", "roleKeys", "projectId", "state"}]}``.

ZITADEL does not retry event deliveries, so these reads are how missed events are repaired
(:mod:`app.webhooks.zitadel_pull`) and how ``user.*`` events with an empty payload (v4.1.x) are read.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from app.webhooks.authentik_fetcher import IdpFetchError
from app.webhooks.events import (
    SCIM_USER_SCHEMA,
    FetchUser,
    Ignored,
    UserDelete,
    UserLocked,
    UserUpsert,
    WebhookEvent,
)

__all__ = ["ZitadelApi", "zitadel_user_events"]

_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_INACTIVE = {"USER_STATE_INACTIVE", "USER_STATE_DELETED"}


def zitadel_user_events(user: dict[str, Any]) -> tuple[WebhookEvent, ...]:
    """A v2 user object as neutral events: ``UserUpsert`` (+ ``UserLocked``); machine users are ignored."""
    user_id = user.get("userId")
    if not isinstance(user_id, str) or not user_id:
        raise IdpFetchError("zitadel user object without userId")
    human = user.get("human")
    if not isinstance(human, dict):
        return (Ignored("zitadel machine user"),)
    raw_profile, raw_email = human.get("profile"), human.get("email")
    profile: dict[str, Any] = raw_profile if isinstance(raw_profile, dict) else {}
    email = raw_email.get("email") if isinstance(raw_email, dict) else None
    state = str(user.get("state") or "USER_STATE_ACTIVE")
    scim: dict[str, Any] = {
        "schemas": [SCIM_USER_SCHEMA],
        "externalId": user_id,
        "userName": user.get("username") or user.get("preferredLoginName") or email or user_id,
        "active": state not in _INACTIVE,
    }
    name = {
        k: profile[z] for z, k in (("givenName", "givenName"), ("familyName", "familyName")) if profile.get(z)
    }
    if name:
        scim["name"] = name
    for key in ("displayName", "nickName", "preferredLanguage"):
        if profile.get(key) and not (key == "preferredLanguage" and profile[key] == "und"):
            scim[key] = profile[key]  # "und": ZITADEL's "no language set", always sent
    if isinstance(email, str) and email:
        scim["emails"] = [{"value": email, "primary": True, "type": "work"}]
    return (UserUpsert(user_id, scim), UserLocked(user_id, state == "USER_STATE_LOCKED"))


class ZitadelApi:
    """A small client of the ZITADEL APIs above. ``client`` may be shared; otherwise one is made per call."""

    def __init__(
        self, base_url: str, token: str, *, client: httpx.AsyncClient | None = None, timeout: float = 10.0
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("ZitadelApi: base_url must be an http(s) URL")
        if not token:
            raise ValueError("ZitadelApi: a personal access token is required")
        self._base = base_url.rstrip("/")
        self._token = token
        self._client = client
        self._timeout = timeout

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        try:
            if self._client is not None:
                return await self._client.request(method, self._base + path, json=body, headers=headers)
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                return await client.request(method, self._base + path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise IdpFetchError(f"zitadel API unreachable ({type(exc).__name__})") from None

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        if response.status_code in (401, 403):
            raise IdpFetchError(f"zitadel API refused the token (HTTP {response.status_code})")
        if response.status_code != 200:
            raise IdpFetchError(f"zitadel API answered HTTP {response.status_code}")
        try:
            data = response.json()
        except ValueError:
            raise IdpFetchError("zitadel API answered non-JSON") from None
        if not isinstance(data, dict):
            raise IdpFetchError("zitadel API answered an unexpected document")
        return data

    async def get_user(self, user_id: str) -> dict[str, Any] | None:
        """The v2 user object, or None when ZITADEL says it does not exist (404)."""
        if not _ID.fullmatch(user_id):
            raise IdpFetchError("zitadel user id has an unexpected shape")
        response = await self._call("GET", f"/v2/users/{user_id}")
        if response.status_code == 404:
            return None
        data = self._json(response)
        user = data.get("user")
        if not isinstance(user, dict):
            raise IdpFetchError("zitadel API answered without a user")
        user.setdefault("userId", user_id)
        # GetUserByID puts the user's ``details`` (its sequence) beside it, ListUsers inside each user.
        if isinstance(data.get("details"), dict):
            user.setdefault("details", data["details"])
        return user

    async def _pages(self, path: str, page_size: int) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        while True:
            body = {"query": {"offset": str(len(results)), "limit": page_size, "asc": True}}
            page = self._json(await self._call("POST", path, body)).get("result") or []
            if not isinstance(page, list):
                raise IdpFetchError("zitadel API answered a malformed list")
            results += [item for item in page if isinstance(item, dict)]
            if len(page) < page_size:
                return results

    async def list_users(self, page_size: int = 100) -> list[dict[str, Any]]:
        """Every user the token may read (``ListUsers``), page by page."""
        return await self._pages("/v2/users", page_size)

    async def list_grants(self, page_size: int = 100) -> list[dict[str, Any]]:
        """Every user grant of the token's organisation (management v1 ``ListUserGrants``)."""
        return await self._pages("/management/v1/users/grants/_search", page_size)

    async def resolve(self, event: FetchUser) -> tuple[WebhookEvent, ...]:
        """Replace a :class:`FetchUser` by what the API says about the user (``UserDelete`` on 404)."""
        user = await self.get_user(event.source_user_id)
        if user is None:
            return (UserDelete(event.source_user_id),)
        return zitadel_user_events(user)
