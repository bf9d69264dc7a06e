"""Plain-text rendering of doctor reports and token explanations (``--json`` prints ``as_dict()``)."""

from __future__ import annotations

from collections.abc import Iterable

from app.diagnostics.doctor import DoctorReport
from app.diagnostics.explain import Explanation
from app.diagnostics.findings import Finding

_LABEL = {"ok": "ok", "info": "info", "warn": "WARN", "error": "ERROR"}
_STEP = {"ok": "ok", "fail": "FAIL", "unknown": "??", "info": "info"}


def _block(label: str, text: str, fix: Iterable[str] = ()) -> list[str]:
    first, *rest = text.splitlines() or [""]
    lines = [f"  {label:<6} {first}"]
    lines += [f"         {line}" for line in rest]
    lines += [f"         fix: {line}" for line in fix]
    return lines


def _finding(item: Finding) -> list[str]:
    return _block(_LABEL[item.severity.value], item.message, item.fix)


def render_doctor(report: DoctorReport) -> str:
    lines: list[str] = []
    scope = None
    for item in report.findings.items:
        if item.scope != scope:
            scope = item.scope
            lines.append(f"[{scope}]")
        lines.extend(_finding(item))
    errors, warnings = report.findings.errors, report.findings.warnings
    verdict = "FAILED" if errors else "passed"
    lines.append(f"doctor {verdict}: {errors} error(s), {warnings} warning(s)")
    return "\n".join(lines)


def render_explanation(out: Explanation) -> str:
    claims = ", ".join(f"{k}={v!r}" for k, v in out.claims.items())
    lines = [f"token: {claims}"]
    for step in out.steps:
        lines.extend(_block(_STEP[step.status], step.text))
    if out.outcome == "success":
        lines.append(f"RESULT: {out.summary}")
    elif out.outcome == "failure":
        lines.append(f"RESULT: the ext-jwt login would FAIL ({out.reason}): {out.summary}")
    else:
        lines.append(f"RESULT: cannot tell ({out.reason or 'unknown'}): {out.summary}")
    if out.closest:
        lines.append(f"closest SCIM user: {out.closest}")
    lines.extend(f"fix: {line}" for line in out.fixes)
    return "\n".join(lines)
