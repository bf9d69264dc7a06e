"""Where the published files live: ``schemas/`` (SCIM discovery documents and mapping presets).

In a checkout (and an editable install) it is the top-level ``schemas/`` folder; an installed wheel
carries a copy in ``<prefix>/share/ziti-scim/schemas``; ``$ZITI_SCIM_SCHEMAS`` overrides both.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def schemas_dir() -> Path:
    configured = os.environ.get("ZITI_SCIM_SCHEMAS")
    if configured:
        return Path(configured)
    for candidate in (
        Path(__file__).resolve().parents[1] / "schemas",
        Path(sys.prefix) / "share" / "ziti-scim" / "schemas",
    ):
        if (candidate / "Schemas.json").is_file():
            return candidate
    raise FileNotFoundError("cannot find the schemas/ folder; set ZITI_SCIM_SCHEMAS")
