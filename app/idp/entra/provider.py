"""Microsoft Entra ID's provisioning service (SCIM client only).

Its client sends unknown schema URNs (``urn:ietf:params:scim:schemas:extension:ADSCIM:2.0:Group``,
dropped: ``drop_unknown_schemas``), empty ``schemas`` (``fill_schemas``), unquoted filter values
(``unquoted_filters``), and expects a group PATCH to be answered ``204 No Content``
(``group_patch_no_content``), as Microsoft's "Tutorial: Develop and plan provisioning for a SCIM
endpoint" describes. Booleans sent as strings and role values sent as JSON strings are tolerated for
every source (:mod:`app.mapping.value_filter`, :mod:`app.mapping.roles`).
"""

from __future__ import annotations

from app.idp.types import IdentityProvider
from app.scim.quirks import Quirks

__all__ = ["PROVIDER"]

PROVIDER = IdentityProvider(
    kind="entra",
    quirks=Quirks(
        kind="entra",
        fill_schemas=True,
        drop_unknown_schemas=True,
        unquoted_filters=True,
        group_patch_no_content=True,
        unique_group_names=True,
    ),
)
