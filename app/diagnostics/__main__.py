"""``python -m app.diagnostics doctor|explain-token ...``."""

from __future__ import annotations

import sys

from app.diagnostics.cli import main

sys.exit(main())
