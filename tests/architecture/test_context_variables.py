"""No context variable carries request state between layers: what a layer needs is passed to it.

The one exception is the SCIM operation's transaction (``app/store/db.py``): scim2-server calls the
storage with signatures fixed by its ABC, so the storage joins the operation's transaction through it.
"""

from __future__ import annotations

import re
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"
ALLOWED = {"store/db.py": 1}
"""Module (relative to ``app/``) -> how many ContextVar objects it may create (see the module docstring)."""


def test_only_the_storage_transaction_travels_in_a_context_variable() -> None:
    found = {
        str(path.relative_to(APP)): len(re.findall(r"=\s*ContextVar\(", path.read_text()))
        for path in APP.rglob("*.py")
    }
    assert {module: count for module, count in found.items() if count} == ALLOWED
