"""Errors raised by the mapping stage.

`MappingError` is a per-user data problem: the SCIM layer answers it with 400 ``invalidValue``
(RFC 7644 §3.12) naming ``attribute``. `MappingConfigError` is an operator problem found while loading
``[sources.<name>.mapping]``; it is raised at start-up, never while serving a request.
"""

from __future__ import annotations


class MappingError(Exception):
    """The user resource cannot be mapped to an OpenZiti identity."""

    scim_type = "invalidValue"

    def __init__(self, attribute: str, detail: str) -> None:
        super().__init__(f"{attribute}: {detail}")
        self.attribute = attribute
        self.detail = detail


class MappingConfigError(ValueError):
    """A mapping configuration key (or preset file) is invalid."""

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(f"mapping.{key}: {detail}")
        self.key = key
        self.detail = detail


class PathSyntaxError(ValueError):
    """A SCIM attribute path or filter (RFC 7644 §3.4.2.2, §3.5.2) does not parse; ``position`` (0-based)
    is None when the error is in the path as a whole rather than at one place."""

    def __init__(self, text: str, position: int | None, detail: str) -> None:
        where = "" if position is None else f" at position {position}"
        super().__init__(f"{detail}{where} in {text!r}")
        self.text = text
        self.position = position
        self.detail = detail
