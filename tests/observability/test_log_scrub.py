"""What the log formatter hides (``app.observability.logs.scrub``): tokens, session ids and passwords in any
line. The JSON log lines of a whole running server are ``tests/operations/test_logs.py``."""

from __future__ import annotations

from app.observability.logs import scrub


def test_scrub_masks_secret_shapes() -> None:
    text = 'Authorization: Bearer abc.def.ghi zt-session: 1234-5678 {"password": "hunter2"}'
    scrubbed = scrub(text)
    assert "abc.def.ghi" not in scrubbed and "1234-5678" not in scrubbed and "hunter2" not in scrubbed
