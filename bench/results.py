"""The results document (stable JSON schema ``ziti-scim-bench/1``) and its text / markdown tables.

Schema::

    {
      "schema": "ziti-scim-bench/1",
      "timestamp": "2026-01-02T03:04:05Z", "mode": "quick" | "full", "databases": ["sqlite", "postgres"],
      "duration_s": 123.4,
      "machine": {"cpu_count": 2, "python": "3.11.7", "platform": "...", "packages": {...}, ...},
      "sections": [
        {"id": "crud", "title": "...", "notes": ["..."],
         "metrics": [{"name": "p50", "value": 3.1, "unit": "ms", "labels": {"target": "ziti-sqlite", ...},
                      "goal": {"op": "<=", "value": 20, "unit": "ms", "met": true}}],
         "tables": [{"title": "...", "columns": ["..."], "rows": [["..."]]}]}
      ]
    }

Every number in a table is also a metric; tables are only a presentation of them.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = "ziti-scim-bench/1"


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)

    def add(self, *cells: Any) -> None:
        self.rows.append(list(cells))

    def as_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "columns": self.columns,
            "rows": [[fmt(c) for c in row] for row in self.rows],
        }


@dataclass
class Section:
    id: str
    title: str
    notes: list[str] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    loadavg: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def metric(
        self,
        name: str,
        value: float | int | None,
        unit: str,
        goal: tuple[str, float] | None = None,
        **labels: Any,
    ) -> float | int | None:
        entry: dict[str, Any] = {
            "name": name,
            "value": None
            if value is None or (isinstance(value, float) and math.isnan(value))
            else _round(value),
            "unit": unit,
            "labels": labels,
        }
        if goal is not None and entry["value"] is not None:
            op, target = goal
            met = (
                entry["value"] <= target
                if op == "<="
                else entry["value"] < target
                if op == "<"
                else (entry["value"] == target)
            )
            entry["goal"] = {"op": op, "value": target, "unit": unit, "met": met}
        self.metrics.append(entry)
        return value

    def note(self, text: str) -> None:
        self.notes.append(text)

    def table(self, title: str, columns: list[str]) -> Table:
        table = Table(title, columns)
        self.tables.append(table)
        return table

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "notes": self.notes,
            "metrics": self.metrics,
            "tables": [t.as_dict() for t in self.tables],
            "seconds": round(self.seconds, 1),
            "loadavg_1m": self.loadavg,
        }


def _round(value: float | int) -> float | int:
    if isinstance(value, int):
        return value
    if value == 0:
        return 0.0
    digits = max(0, 3 - int(math.floor(math.log10(abs(value)))))
    return round(value, min(digits, 6))


def fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def render_text(table: Table) -> str:
    cells = [table.columns] + [[fmt(c) for c in row] for row in table.rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(table.columns))]
    lines = [table.title, "  ".join(c.ljust(w) for c, w in zip(table.columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        lines.append(
            "  ".join(
                c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    return "\n".join(lines)


def render_markdown(table: Table) -> str:
    lines = [f"**{table.title}**", "", "| " + " | ".join(table.columns) + " |"]
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(table.columns) - 1)) + "|")
    for row in table.rows:
        lines.append("| " + " | ".join(fmt(c) for c in row) + " |")
    return "\n".join(lines)


@dataclass
class Results:
    mode: str
    databases: list[str]
    machine: dict[str, Any]
    sections: list[Section] = field(default_factory=list)
    started: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    duration: float = 0.0

    def section(self, id: str, title: str) -> Section:
        section = Section(id, title)
        self.sections.append(section)
        return section

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "timestamp": self.started.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "mode": self.mode,
            "databases": self.databases,
            "duration_s": round(self.duration, 1),
            "machine": self.machine,
            "sections": [s.as_dict() for s in self.sections],
        }

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_dict(), indent=2) + "\n")

    def markdown(self, json_name: str = "latest.json") -> str:
        m = self.machine
        out = [
            f"# ziti-scim benchmark results ({self.mode} mode)",
            "",
            f"Measured {self.started.strftime('%Y-%m-%d %H:%M UTC')} on {m.get('cpu_count')} CPU(s)"
            f" ({m.get('cpu_model')}), {m.get('memory_total_mb')} MB RAM, Python {m.get('python')},"
            f" {m.get('platform')}; databases: {', '.join(self.databases)}; run time {self.duration:.0f} s;"
            f" ziti-scim {m.get('git_commit')}{' with uncommitted changes' if m.get('git_dirty') else ''}."
            f" Generated by `python -m bench.run{' --quick' if self.mode == 'quick' else ''}`"
            f" (raw numbers: `{json_name}`).",
            "",
            f"1-minute load average: {m.get('loadavg_1m_at_start')} at the start, "
            f"{m.get('loadavg_1m_at_end')} at the end (on {m.get('cpu_count')} CPUs; a value above the CPU "
            "count means other work competed with "
            "the benchmark and the latencies are inflated).",
        ]
        for section in self.sections:
            out += ["", f"## {section.title}", ""]
            for table in section.tables:
                out += [render_markdown(table), ""]
            for note in section.notes:
                out.append(f"- {note}")
            if section.loadavg:
                out.append(
                    f"- Section run time {section.seconds:.0f} s; load average {section.loadavg[0]} before, "
                    f"{section.loadavg[1]} after."
                )
        return "\n".join(out).rstrip() + "\n"

    @classmethod
    def load(cls, path: Path) -> Results:
        """Read a results file back (to render its markdown again)."""
        data = json.loads(path.read_text())
        results = cls(mode=data["mode"], databases=data["databases"], machine=data["machine"])
        results.started = dt.datetime.strptime(data["timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
        results.duration = float(data["duration_s"])
        for raw in data["sections"]:
            section = results.section(raw["id"], raw["title"])
            section.notes = list(raw["notes"])
            section.metrics = list(raw["metrics"])
            section.loadavg = list(raw.get("loadavg_1m", []))
            section.seconds = float(raw.get("seconds", 0.0))
            section.tables = [
                Table(t["title"], t["columns"], [list(r) for r in t["rows"]]) for t in raw["tables"]
            ]
        return results
