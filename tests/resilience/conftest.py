"""The resilience suite (issue 6): each scenario's summary line is repeated at the end of the run."""

from __future__ import annotations

import os
import tempfile

import pytest
from hypothesis.configuration import set_hypothesis_home_dir

from tests.resilience.res_support import SUMMARIES

# Hypothesis keeps caches in its home directory (.hypothesis/ by default): not in the repository. The
# example database itself is off in every test (``database=None``).
set_hypothesis_home_dir(
    os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY")
    or os.path.join(tempfile.gettempdir(), "ziti-scim-hypothesis")
)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SUMMARIES:
        terminalreporter.section("resilience scenarios")
        for line in SUMMARIES:
            terminalreporter.write_line(line)
