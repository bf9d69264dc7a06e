"""Diagnostics for operators: ``ziti-scim doctor`` and ``ziti-scim explain-token``.

Public API:

* :func:`run_doctor` → :class:`DoctorReport` (findings with severities and exact fixes; ``exit_code``);
* :func:`explain_token` → :class:`Explanation` (outcome, reason code, steps, closest SCIM user, fixes);
* :func:`app.diagnostics.cli.register` adds both commands to an ``argparse`` sub-parser.
"""

from __future__ import annotations

from app.diagnostics.doctor import DoctorReport, run_doctor
from app.diagnostics.explain import Explanation, explain_token
from app.diagnostics.findings import Finding, Findings, Severity
from app.diagnostics.token import TokenError

__all__ = [
    "DoctorReport",
    "Explanation",
    "Finding",
    "Findings",
    "Severity",
    "TokenError",
    "explain_token",
    "run_doctor",
]
