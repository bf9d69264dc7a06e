"""``python -m bench.run [--quick] [--db sqlite|postgres|both] [--only SECTION] [--out FILE.json]``

Runs every section, prints each table as soon as its section is done, and writes the JSON results and a
markdown rendering next to it (``latest.md`` for ``latest.json``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import s1_crud, s2_growth, s3_groups, s4_bulk, s5_e2e
from bench.common import machine_info
from bench.procs import Workdir, pg_available
from bench.results import Results, render_text

SECTIONS: dict[str, Callable[..., None]] = {
    "crud": s1_crud.run,
    "growth": s2_growth.run,
    "groups": s3_groups.run,
    "bulk": s4_bulk.run,
    "e2e": s5_e2e.run,
    "sync": s5_e2e.run_sync,
}
RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_OUT = RESULTS / "latest.json"
"""Where a full run of every section goes; a ``--quick`` one goes to ``quick.json``. A run of some
sections (``--only``) writes nothing unless ``--out`` is given: it would replace a whole run's record
with part of one."""


def loadavg() -> float:
    """The 1-minute load average: other work on the machine shows here (above the CPU count: contention)."""
    return round(os.getloadavg()[0], 2)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes: about 3 minutes on 2 cores")
    parser.add_argument(
        "--db",
        choices=["sqlite", "postgres", "both"],
        default="both",
        help="databases for ziti-scim (default: both; PostgreSQL is skipped if unreachable)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON results (default: results/latest.json, quick.json with --quick)"
    )
    parser.add_argument("--only", action="append", choices=list(SECTIONS), help="run only these sections")
    parser.add_argument(
        "--sync-budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="time budget of the initial-sync scenario (default 420, --quick 90; 0: none)",
    )
    parser.add_argument(
        "--render", type=Path, metavar="JSON", help="only write the markdown of a results file"
    )
    args = parser.parse_args(argv)
    s5_e2e.SYNC_BUDGET = args.sync_budget
    if args.render:
        args.render.with_suffix(".md").write_text(Results.load(args.render).markdown(args.render.name))
        return 0

    databases = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    machine = machine_info()
    if "postgres" in databases:
        version = pg_available()
        if version is None:
            log("PostgreSQL is not reachable on 127.0.0.1:5432 (set ZITI_SCIM_BENCH_PG): skipping it")
            databases.remove("postgres")
            if not databases:
                return 2
        machine["postgresql"] = version
    machine["loadavg_1m_at_start"] = loadavg()
    results = Results(mode="quick" if args.quick else "full", databases=databases, machine=machine)
    workdir = Workdir()
    began = time.perf_counter()
    failures = 0
    try:
        for name, section_run in SECTIONS.items():
            if args.only and name not in args.only:
                continue
            log(f"section {name} ...")
            section_began = time.perf_counter()
            known = len(results.sections)
            load_before = loadavg()
            try:
                section_run(results, databases, workdir, args.quick, log)
            except Exception:  # noqa: BLE001 - one broken section must not lose the others' numbers
                failures += 1
                error = traceback.format_exc()
                log(f"section {name} FAILED:\n{error}")
                results.section(f"{name}-error", f"{name}: failed").note(error.strip().splitlines()[-1])
            log(f"section {name} done in {time.perf_counter() - section_began:.0f} s")
            for section in results.sections[known:]:
                section.loadavg = [load_before, loadavg()]
                section.seconds = time.perf_counter() - section_began
            for section in results.sections[known:]:
                _print_section(section)
    finally:
        workdir.cleanup()
    results.duration = time.perf_counter() - began
    results.machine["loadavg_1m_at_end"] = loadavg()
    out = args.out or (None if args.only else RESULTS / "quick.json" if args.quick else DEFAULT_OUT)
    if out is None:
        log(f"partial run (--only): no results file written; --out FILE keeps one ({results.duration:.0f} s)")
        return 1 if failures else 0
    results.write_json(out)
    out.with_suffix(".md").write_text(results.markdown(out.name))
    log(f"wrote {out} and {out.with_suffix('.md')} ({results.duration:.0f} s)")
    return 1 if failures else 0


def _print_section(section: Any) -> None:
    print(f"\n== {section.title} ==", flush=True)
    for table in section.tables:
        print("\n" + render_text(table), flush=True)
    for note in section.notes:
        print(f"  * {note}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
