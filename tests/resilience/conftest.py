"""The resilience suite (issue 6): each scenario's summary line is repeated at the end of the run."""

from __future__ import annotations

import os

import pytest

from tests.resilience.res_support import SUMMARIES

# hypothesis must not write its example database into the repository.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", "/tmp/ziti-scim-hypothesis")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SUMMARIES:
        terminalreporter.section("resilience scenarios")
        for line in SUMMARIES:
            terminalreporter.write_line(line)
