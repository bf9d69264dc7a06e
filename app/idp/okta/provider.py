"""Okta's SCIM provisioning (SCIM client only).

Okta's "HTTP Header" authentication mode sends the token without a scheme (``Authorization: <token>``,
``raw_token``), and Okta expects a group PATCH to be answered ``204 No Content``
(``group_patch_no_content``). A Group without ``members`` in an answer would read as "unknown" to Okta,
so the SCIM handler always returns the list (:mod:`app.scim.handler`, for every source).
"""

from __future__ import annotations

from app.idp.types import IdentityProvider
from app.scim.quirks import Quirks

__all__ = ["PROVIDER"]

PROVIDER = IdentityProvider(
    kind="okta",
    quirks=Quirks(kind="okta", raw_token=True, group_patch_no_content=True, unique_group_names=True),
)
