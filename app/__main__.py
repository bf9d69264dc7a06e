"""``python -m app``: the same as the ``ziti-scim`` command."""

import sys

from app.cli import main

sys.exit(main())
