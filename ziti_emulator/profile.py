"""Controller version profiles: which release of openziti/ziti the emulator imitates.

Each switch names the Go file and function of the controller it mirrors (openziti/ziti tags v1.6.20,
v1.8.0-pre5, v2.0.0, v2.0.3). ``docs/controller-versions.md`` lists them with the tests that show them.

* ``major`` (``"1.6"`` or ``"2.0"``): the older split the emulator already knew (claims as JSON Pointer,
  ``permissions``, policy type rendering); 1.8 behaves like 2.0 there
  (``controller/model/identity_model.go`` has ``Permissions`` since 1.8).
* ``empty_map_patch_clears``: ``{"tags": {}}`` in a PATCH clears the tags
  (``controller/api/json_fields.go GetJsonFields``, "Fix PATCH of tags with empty map" #3348, v1.8.0-pre4).
* ``www_authenticate``: 401s carry ``WWW-Authenticate`` challenges and ext-jwt failures are 401
  ``UNAUTHORIZED`` with realm ``openziti-primary-ext-jwt`` (``common/security_tokens.go``, CHANGELOG 2.0.0
  "WWW-Authenticate Headers").
* ``kid_first_signers``: the ext-jwt signer is chosen by ``kid`` before ``iss``
  (``common/security_tokens.go processHeaders``, 2.0.0-2.0.3).
* ``oidc_checks_disabled``: an OIDC access token of a disabled identity is refused (2.0.3 adds the
  revocation constraint; ``controller/env/appenv.go ProcessJwt`` before it never checks ``Disabled``).
* ``non_admin_rules``: identities acting through ``permissions`` may not send ``isAdmin``/``permissions``
  nor touch admins (``controller/internal/routes/identity_router.go Create/Patch/Delete``, 1.8+).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["PROFILES", "VERSIONS", "ControllerProfile", "Major", "Version", "get_profile"]

Version = Literal["1.6", "1.8", "2.0", "2.0.3"]
Major = Literal["1.6", "2.0"]
VERSIONS: tuple[Version, ...] = ("1.6", "1.8", "2.0", "2.0.3")


@dataclass(frozen=True, slots=True)
class ControllerProfile:
    """Behaviour switches of one controller release (see the module docstring for the Go sources)."""

    version: Version
    release: str  # what GET /version reports in data.version
    major: Major
    empty_map_patch_clears: bool
    www_authenticate: bool
    kid_first_signers: bool
    oidc_checks_disabled: bool
    non_admin_rules: bool

    @property
    def is_2x(self) -> bool:
        return self.version.startswith("2.")


PROFILES: dict[Version, ControllerProfile] = {
    "1.6": ControllerProfile("1.6", "v1.6.20", "1.6", False, False, False, False, False),
    "1.8": ControllerProfile("1.8", "v1.8.0-pre5", "2.0", True, False, False, False, True),
    "2.0": ControllerProfile("2.0", "v2.0.0", "2.0", True, True, True, False, True),
    "2.0.3": ControllerProfile("2.0.3", "v2.0.3", "2.0", True, True, True, True, True),
}


def get_profile(version: str) -> ControllerProfile:
    """The profile for ``1.6``, ``1.8``, ``2.0`` or ``2.0.3`` (ValueError otherwise)."""
    try:
        return PROFILES[version]  # type: ignore[index]
    except KeyError:
        choices = ", ".join(VERSIONS)
        raise ValueError(f"unknown controller version {version!r}; choose one of {choices}") from None
