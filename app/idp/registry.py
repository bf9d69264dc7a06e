"""Every identity provider ziti-scim knows, by ``kind``: the one place the core looks an IdP up.

Adding an IdP is one folder, ``app/idp/<kind>/`` with a ``provider.py`` defining its
:class:`~app.idp.types.IdentityProvider`, plus one line in :data:`PROVIDERS` (and its name in the
``kind`` literal of :mod:`app.config_schema`, which the configuration validates against).
"""

from __future__ import annotations

from app.config import SourceConfig
from app.idp.asgardeo.provider import PROVIDER as ASGARDEO
from app.idp.authentik.provider import PROVIDER as AUTHENTIK
from app.idp.entra.provider import PROVIDER as ENTRA
from app.idp.generic.provider import PROVIDER as GENERIC
from app.idp.okta.provider import PROVIDER as OKTA
from app.idp.types import IdentityProvider
from app.idp.zitadel.provider import PROVIDER as ZITADEL
from app.scim.quirks import Quirks, with_options
from app.webhooks.adapter import WebhookFactory

__all__ = ["PROVIDERS", "provider", "quirks_for", "webhook_factory"]

PROVIDERS: dict[str, IdentityProvider] = {
    idp.kind: idp for idp in (GENERIC, AUTHENTIK, ZITADEL, ASGARDEO, ENTRA, OKTA)
}


def provider(source: SourceConfig) -> IdentityProvider:
    """The IdP of ``source`` (a kind the configuration does not know is treated as ``generic``)."""
    return PROVIDERS.get(source.kind, GENERIC)


def quirks_for(source: SourceConfig) -> Quirks:
    """The SCIM quirks of a source: its IdP's, with the overrides its options give."""
    idp = PROVIDERS.get(source.kind)
    return with_options(idp.quirks if idp is not None else Quirks(kind=source.kind), source)


def webhook_factory(source: SourceConfig) -> WebhookFactory | None:
    """The webhook side of a source's IdP, or None when that IdP sends no webhooks."""
    return provider(source).webhook
