"""Random seeds of the randomized tests: fresh each run, pinned by ``$ZITI_SCIM_TEST_SEED``, printed.

The seed is printed before any assertion, so a failure's captured output names it; re-run with
``ZITI_SCIM_TEST_SEED=<seed>`` to replay the same choices. (The hypothesis-based tests are derandomized
by default; ``RESILIENCE_RANDOM=1`` explores, and pytest's ``--hypothesis-seed`` pins that.)
"""

from __future__ import annotations

import os
import random

SEED_ENV = "ZITI_SCIM_TEST_SEED"


def test_seed(name: str) -> int:
    pinned = os.environ.get(SEED_ENV)
    seed = int(pinned) if pinned else random.randrange(1 << 30)
    print(f"{name}: seed={seed} (replay with {SEED_ENV}={seed})")
    return seed


test_seed.__test__ = False  # type: ignore[attr-defined]  # a helper, not a pytest test
