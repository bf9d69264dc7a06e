"""What an IdP gives the webhook receiver (:mod:`app.webhooks.routes`) for one source: the hook's types.

The receiver knows no IdP. For each source with a ``webhook_secret`` it asks the source's IdP
(:mod:`app.idp.registry`) for a :class:`SourceReceiver` built from a :class:`ReceiverContext`; the
receiver then only verifies, applies (or folds, or defers) and answers, the same way for every kind.
The option readers here are shared by the IdP adapters (``[sources.<name>]`` options).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from app.config import ConfigError, SourceConfig
from app.scim.router import SourceApplication
from app.store.db import Database
from app.store.webhook_state import IdpState
from app.webhooks.apply import EventApplier, GroupResolver, Outcome, UserResolver
from app.webhooks.common import SequencedEvent, WebhookResult
from app.webhooks.events import Challenge, Ignored
from app.webhooks.pending import PendingRetrier, PendingStore
from app.webhooks.replay import ReplayGuard

__all__ = [
    "Puller",
    "ReceiverContext",
    "SequencedSink",
    "SourceReceiver",
    "WebhookFactory",
    "api_pair",
    "positive_seconds",
    "webhook_secrets",
]


class SequencedSink(Protocol):
    """Keeps the events an IdP numbers per aggregate and applies them in order (ZITADEL's aggregates)."""

    async def deliver(self, event: SequencedEvent) -> Outcome: ...


class Puller(Protocol):
    """A periodic re-read of the IdP's API that repairs lost deliveries; ``run_once`` is the CLI's pull."""

    async def run_once(self) -> Any: ...

    def start(self) -> None: ...

    async def stop(self) -> None: ...


Verify = Callable[[Mapping[str, str], bytes, "str | None"], Awaitable[WebhookResult]]


@dataclass
class SourceReceiver:
    """One source's webhook side.

    ``verify(headers, body, path_secret)`` checks authenticity and parses; ``path_secret`` is only
    offered when ``path_secret`` is true (``/webhooks/{source}/{secret}``), else such a path is a 404.
    ``subscription`` answers a ``GET`` (WebSub's ``hub.challenge``); without it a ``GET`` is a 405.
    ``aggregates`` receives the deliveries that carry a ``sequenced`` event; ``pending`` keeps deliveries
    acknowledged but not applied (an IdP that must always get a 2xx); ``api`` is the IdP API client, if any.
    """

    source: SourceConfig
    verify: Verify
    applier: EventApplier
    path_secret: bool = False
    subscription: Callable[[Mapping[str, str]], Challenge | Ignored] | None = None
    api: object | None = None
    aggregates: SequencedSink | None = None
    pending: PendingStore | None = None
    pullers: list[Puller] = field(default_factory=list)
    retriers: list[PendingRetrier] = field(default_factory=list)


@dataclass
class ReceiverContext:
    """What the receiver shares with every source's adapter: replay guard, database, clock, HTTP client."""

    db: Database
    guard: ReplayGuard
    clock: Callable[[], float]
    client: httpx.AsyncClient
    on_deferred: Callable[[str], None]
    scim: Mapping[str, SourceApplication]

    def applier(
        self,
        source: SourceConfig,
        resolver: UserResolver | None = None,
        group_resolver: GroupResolver | None = None,
    ) -> EventApplier:
        """The applier that writes a source's events through its SCIM application."""
        state = IdpState(self.db, source.name)
        return EventApplier(self.scim[source.name], state, resolver=resolver, group_resolver=group_resolver)


WebhookFactory = Callable[[SourceConfig, ReceiverContext], SourceReceiver]


def webhook_secrets(source: SourceConfig) -> list[str]:
    """``webhook_secret``: one non-empty string, or a list of them during a rotation."""
    value = source.options.get("webhook_secret")
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(item, str) and item for item in values):
        raise ConfigError(
            f"sources.{source.name}.webhook_secret must be a non-empty string or a list of them"
        )
    return [str(item) for item in values]


def positive_seconds(source: SourceConfig, option: str, default: float) -> float:
    """A duration option (seconds) of ``source``, ``default`` when absent."""
    value = source.options.get(option, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"sources.{source.name}.{option} must be a positive number of seconds")
    return float(value)


def api_pair(source: SourceConfig, url_option: str, token_option: str) -> tuple[str, str] | None:
    """An IdP API's URL and token, set together or not at all."""
    url, token = source.options.get(url_option), source.options.get(token_option)
    if url is None and token is None:
        return None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) or not isinstance(token, str):
        raise ConfigError(
            f"sources.{source.name}: {url_option} (an http(s) URL) and {token_option} must be set together"
        )
    return url, token
