"""What a diagnostic check found: a severity, where, what, and the exact fix."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    """``error`` fails ``doctor`` (non-zero exit); ``warn`` and below never do."""

    OK = "ok"
    INFO = "info"
    WARN = "warn"
    ERROR = "error"


@dataclass(frozen=True)
class Finding:
    """One result. ``fix`` lines are commands or config snippets to apply verbatim, in order."""

    severity: Severity
    scope: str
    message: str
    fix: tuple[str, ...] = ()
    code: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity.value,
            "scope": self.scope,
            "code": self.code,
            "message": self.message,
            "fix": list(self.fix),
        }


@dataclass
class Findings:
    """An ordered list of findings with counters."""

    items: list[Finding] = field(default_factory=list)

    def add(self, severity: Severity, scope: str, message: str, *fix: str, code: str = "") -> Finding:
        finding = Finding(severity, scope, message, tuple(fix), code)
        self.items.append(finding)
        return finding

    def count(self, severity: Severity) -> int:
        return sum(1 for item in self.items if item.severity is severity)

    @property
    def errors(self) -> int:
        return self.count(Severity.ERROR)

    @property
    def warnings(self) -> int:
        return self.count(Severity.WARN)

    def codes(self) -> list[str]:
        return [item.code for item in self.items]
