"""Request ids: the client's ``X-Request-Id``, bounded and sanitised, or a fresh one.

The id is echoed in the response, written to every log line of the request and stored with the rows it
causes (``dirty.request_id``, ``audit.request_id``, both ``String(64)``). A client's value is kept only as
far as it is safe there: the characters ``A-Z a-z 0-9 - _ . : / + = @`` (others are dropped) and at most
64 of them (the rest is cut). A value with nothing left is replaced by a random id.
"""

from __future__ import annotations

import re
import uuid

MAX_LENGTH = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:/+=@-]")


def request_id_from(given: str | None) -> str:
    """The id a request is known by (see the module docstring)."""
    kept = _UNSAFE.sub("", given[: MAX_LENGTH * 8])[:MAX_LENGTH] if given else ""
    return kept or uuid.uuid4().hex
