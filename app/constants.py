"""Names shared by several parts of the service, defined once.

- SCIM schema URNs (RFC 7643 §3.3: a resource's extensions are named by URN). The User resource type
  has three extensions, all ``required: false`` (``schemas/ResourceTypes.json``):

  - :data:`ENTERPRISE_EXTENSION`, the enterprise user of RFC 7643 §4.3;
  - :data:`ZITI_EXTENSION`, what a client writes about the user's OpenZiti identity (``roleAttributes``);
  - :data:`STATUS_EXTENSION`, what the service reports about that identity: :data:`STATUS_ATTRIBUTES`,
    all ``readOnly`` (RFC 7643 §2.2: computed by the service, ignored when a client sends them). They
    live in their own extension so that the writable one round-trips exactly: what a client PUTs or
    PATCHes into :data:`ZITI_EXTENSION` is what it reads back.

- :data:`DESTRUCTIVE_ACTIONS`: the reconcile actions that take access away from an identity; the
  safety brake counts them and an admin identity is never the target of one.
- :data:`ASYMMETRIC_ALGORITHMS`: the JWS algorithms (RFC 7518 §3.1, RFC 8037 §3.1 for EdDSA) accepted
  on IdP-signed tokens. Public-key ones only: an HMAC secret would have to be shared with every verifier.
"""

from __future__ import annotations

ENTERPRISE_EXTENSION = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
ZITI_EXTENSION = "urn:openziti:scim:schemas:extension:ziti:2.0:User"
STATUS_EXTENSION = "urn:openziti:scim:schemas:extension:ziti:2.0:Status"
STATUS_ATTRIBUTES = ("identityId", "provisioningState", "lastError")

DESTRUCTIVE_ACTIONS = ("disable", "delete")

ASYMMETRIC_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
