"""Any RFC 7643/7644 SCIM client: no tolerance beyond the standard, no webhooks.

Like every kind, ``generic`` refuses a second Group of the same ``displayName`` (``unique_group_names``).
"""

from __future__ import annotations

from app.idp.types import IdentityProvider
from app.scim.quirks import Quirks

__all__ = ["PROVIDER"]

PROVIDER = IdentityProvider(kind="generic", quirks=Quirks())
