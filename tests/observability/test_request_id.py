"""Request ids (``app.observability.request_id``): a client's ``X-Request-Id`` is kept without the characters
a log line or a row must not hold, cut to 64 characters; when nothing is left, the request gets a fresh id.
The end-to-end path (the id in the log line and the audit row) is ``tests/scim/test_request_ids.py``."""

from __future__ import annotations

import pytest

from app.observability.request_id import request_id_from


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        (None, None),
        ("", None),
        ("0f8e-1234_abc.DEF:9", "0f8e-1234_abc.DEF:9"),
        ("x" * 65, "x" * 64),
        ("é€ é", None),
        ("a b\nc\r\nd", "abcd"),
    ],
)
def test_request_id_from(given: str | None, kept: str | None) -> None:
    result = request_id_from(given)
    if kept is None:
        assert len(result) == 32 and result.isalnum()
    else:
        assert result == kept
