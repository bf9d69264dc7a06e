"""The hooks an identity provider gives the core: the one protocol every ``app.idp.<kind>`` fills in.

The core (SCIM service, webhook receiver, server, CLI) never asks which IdP a source is: it asks the
source's :class:`IdentityProvider` (:mod:`app.idp.registry`). Only the hooks the IdPs need exist:

* ``quirks``: how the SCIM service tolerates the IdP's client (:class:`app.scim.quirks.Quirks`);
  a source's options may override them (:func:`app.scim.quirks.with_options`).
* ``webhook``: builds the source's webhook side (verifier, event parser, API client, pullers, retries:
  :class:`app.webhooks.adapter.SourceReceiver`); None for an IdP that only speaks SCIM.

A source's mapping preset defaults to the file named after its kind (``schemas/mappings/<kind>.json``).
"""

from __future__ import annotations

from dataclasses import dataclass

from app.scim.quirks import Quirks
from app.webhooks.adapter import WebhookFactory

__all__ = ["IdentityProvider"]


@dataclass(frozen=True)
class IdentityProvider:
    """One IdP: its ``kind`` (the ``kind`` of ``[sources.<name>]``), its SCIM quirks and webhook side."""

    kind: str
    quirks: Quirks
    webhook: WebhookFactory | None = None
