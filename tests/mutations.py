"""Deliberate bugs, and whether the tests catch them: ``python -m tests.mutations [NAME ...]``.

Each mutation is a small textual patch (the kind of mistake a refactoring makes: a rule dropped, an
option ignored). For each one the repository is copied to a temporary directory, the patch applied
there, and the tests that guard the rule are run against the copy with this interpreter; the
mutation is *caught* when they fail. Prints one line per mutation and exits non-zero when any is not
caught, or when a patch no longer applies (the code moved: update the patch, never drop it).

Not part of the normal pytest run (it runs the guarding tests once per mutation). Options:
``--list`` prints the mutations, ``--check`` only checks that every patch still applies and its tests exist, ``--postgres`` also runs the PostgreSQL variants (SQLite only by
default), ``-v`` shows the pytest output of mutations that survive.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.paths import ROOT, shared_dir

IGNORE = shutil.ignore_patterns(
    ".git", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", "*.egg-info", "*.db*", ".venv*"
)

SAFETY = "app/reconcile/safety.py"
STORE_AUDIT = "app/store/audit.py"  # the brake counts its actions here
RECONCILER = "app/reconcile/reconciler.py"
OWNERSHIP = "app/reconcile/ownership.py"
ROLES = "app/mapping/roles.py"
SAFETY_TESTS = ("tests/operations/test_safety.py",)
OWNERSHIP_TESTS = ("tests/provisioning/test_ownership_rules.py", "tests/provisioning/test_ownership.py")
LIFECYCLE_TESTS = ("tests/provisioning/test_options.py", "tests/provisioning/test_lifecycle.py")


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]
    postgres_only: bool = False

    def apply(self, root: Path) -> None:
        file = root / self.path
        source = file.read_text()
        count = source.count(self.old)
        if count == 0:
            raise LookupError(f"{self.path}: the text to mutate is gone: {self.old!r}")
        file.write_text(source.replace(self.old, self.new))


MUTATIONS: tuple[Mutation, ...] = (
    Mutation(
        "brake: count rule removed",
        SAFETY,
        "if count > self.config.max_count or (",
        "if False or (",
        SAFETY_TESTS,
    ),
    Mutation(
        "brake: share rule removed",
        SAFETY,
        "count > self.config.min_count and share > self.config.max_share",
        "False",
        SAFETY_TESTS,
    ),
    Mutation(
        "brake: share counted below brake_min",
        SAFETY,
        "count > self.config.min_count and share",
        "count > 0 and share",
        SAFETY_TESTS,
    ),
    Mutation(
        "brake: time window ignored",
        SAFETY,
        "since = time.time() - self.config.window",
        "since = 0.0",
        SAFETY_TESTS,
    ),
    Mutation(
        "brake: other sources' actions counted",
        STORE_AUDIT,
        "audit.c.source == source,\n",
        "",
        SAFETY_TESTS,
    ),
    Mutation(
        "brake: one source's engaged brake holds every source",
        SAFETY,
        "value = await self._setting(brake_key(source))",
        "value = next(iter((await engaged_brakes(self.db)).values()), None)",
        SAFETY_TESTS,
    ),
    Mutation(
        "resume: the brake is not released",
        SAFETY,
        "await write_setting(db, brake_key(source), None)",
        "pass",
        SAFETY_TESTS,
    ),
    Mutation(
        "pause ignored",
        SAFETY,
        "return bool(await self._setting(PAUSED))",
        "return False",
        SAFETY_TESTS,
    ),
    Mutation(
        'on_delete = "disable" deletes instead',
        RECONCILER,
        'elif how == "disable":',
        "elif False:",
        LIFECYCLE_TESTS,
    ),
    Mutation(
        'adopt = "refuse" ignored',
        OWNERSHIP,
        "if not owner.adopt:",
        "if False:",
        LIFECYCLE_TESTS,
    ),
    Mutation(
        'name_conflict = "refuse" ignored',
        RECONCILER,
        'settings.mapping.name_conflict == "suffix"',
        "True",
        LIFECYCLE_TESTS,
    ),
    Mutation(
        "role_deny ignored",
        ROLES,
        "if any(fnmatchcase(value, pattern) for pattern in config.role_deny):",
        "if False:",
        ("tests/mapping/test_mapping_roles.py", *LIFECYCLE_TESTS),
    ),
    Mutation(
        "role_allow ignored",
        ROLES,
        "if config.role_allow and not any(",
        "if False and not any(",
        ("tests/mapping/test_mapping_roles.py", *LIFECYCLE_TESTS),
    ),
    Mutation(
        "admin_group: any group grants isAdmin",
        "app/mapping/mapper.py",
        "== config.admin_group\n",
        "is not None\n",
        ("tests/mapping/test_mapping_roles.py", *LIFECYCLE_TESTS),
    ),
    Mutation(
        "rate limit ignored",
        "app/scim/router.py",
        "wait = bucket.take()",
        "wait = 0.0",
        SAFETY_TESTS,
    ),
    Mutation(
        "rate limit shared by every source",
        "app/scim/router.py",
        "self.buckets.get(app.source.name)",
        "next(iter(self.buckets.values()), None)",
        SAFETY_TESTS,
    ),
    Mutation(
        "rate limit never refills",
        "app/scim/ratelimit.py",
        "self.tokens + (now - self.updated) * self.rate",
        "self.tokens",
        ("tests/operations/test_safety.py", "tests/scim"),
    ),
    Mutation(
        "re-read before a change reverted (the recorded fields trusted)",
        RECONCILER,
        'current = Applied(identity["id"], observed_fields(identity), ownership.is_adopted(identity))',
        'current = Applied(identity["id"], dict(applied.get("fields") or {}), ownership.is_adopted(identity))',
        ("tests/resilience/test_res_controller.py", "tests/provisioning"),
    ),
    Mutation(
        "an admin identity may be adopted or taken over",
        OWNERSHIP,
        "    if is_admin(identity):\n        return Decision(\"conflict\"",
        "    if False:\n        return Decision(\"conflict\"",
        OWNERSHIP_TESTS,
    ),
    Mutation(
        "another deployment's identity counts as ours",
        OWNERSHIP,
        "if deployment != owner.deployment:",
        "if False:",
        OWNERSHIP_TESTS,
    ),
    Mutation(
        "a database without users deletes orphans",
        OWNERSHIP,
        "return known_users > 0",
        "return True",
        OWNERSHIP_TESTS,
    ),
    Mutation(
        "a cursor= search is not refused",
        "app/scim/service.py",
        'if "cursor" in query:',
        "if False:",
        ("tests/scim/test_bad_input.py",),
    ),
    Mutation(
        "sync does not wait for leases held elsewhere",
        "app/reconcile/sync.py",
        "await settle(provisioner.worker, marked, timeout=600)",
        "await provisioner.worker.drain(timeout=600)",
        ("tests/provisioning/test_sync.py",),
    ),
    Mutation(
        "a write skips its converge with a change of the user waiting",
        "app/store/provisioning.py",
        "if row is None or row.s_dirty:",
        "if row is None:",
        ("tests/reconcile/test_admission.py", "tests/store/test_store_operations.py"),
    ),
    Mutation(
        "a write skips its converge when groups hide a change of the document",
        "app/reconcile/admission.py",
        "if same_user_name and _own(before, settings) == (_own(document, settings) if refs else target):",
        "if same_user_name:",
        ("tests/reconcile/test_admission.py",),
    ),
    Mutation(
        "a connection whose block failed is kept for the next transaction",
        "app/store/db.py",
        """        keep = False
        try:""",
        """        keep = True
        try:""",
        ("tests/store/test_sqlite_transactions.py",),
    ),
    Mutation(
        "a read for an update is matched by its connection, not its transaction",
        "app/store/storage.py",
        "return conn.sync_connection.get_transaction() if conn.sync_connection is not None else None",
        "return conn",
        ("tests/store/test_store_operations.py",),
    ),
)


@dataclass
class Result:
    mutation: Mutation
    verdict: str  # caught | NOT CAUGHT | PATCH FAILED
    seconds: float
    output: str


def run(mutation: Mutation, *, postgres: bool) -> Result:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ziti-scim-mutant-") as scratch:
        copy = Path(scratch) / "repo"
        shutil.copytree(ROOT, copy, ignore=IGNORE)
        try:
            mutation.apply(copy)
        except LookupError as error:
            return Result(mutation, "PATCH FAILED", time.monotonic() - started, str(error))
        env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1")
        shared = shared_dir()
        if shared is not None:
            env["ZITI_SCIM_SHARED"] = str(shared)  # the copy has no sibling shared/
        args = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:randomly", "-p", "no:cacheprovider"]
        if not postgres and not mutation.postgres_only:
            args += ["-m", "not postgres"]
        done = subprocess.run(
            [*args, *mutation.tests], cwd=copy, env=env, capture_output=True, text=True, timeout=1800
        )
    # pytest: 1 = tests failed (caught); 0 = all passed; anything else = could not run them.
    verdict = {0: "NOT CAUGHT", 1: "caught"}.get(done.returncode, f"ERROR (pytest exit {done.returncode})")
    return Result(mutation, verdict, time.monotonic() - started, done.stdout + done.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutations", description=__doc__)
    parser.add_argument("names", nargs="*", help="run only mutations whose name contains one of these")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--check", action="store_true", help="only check that every patch still applies and its tests exist")
    parser.add_argument("--postgres", action="store_true", help="also run the PostgreSQL variants")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.names or any(n in m.name for n in args.names)]
    if args.list:
        for mutation in chosen:
            print(f"{mutation.name:<55} {mutation.path}  tests: {' '.join(mutation.tests)}")
        return 0
    if args.check:
        stale = [m for m in chosen if (ROOT / m.path).read_text().count(m.old) == 0]
        for mutation in stale:
            print(f"PATCH FAILED {mutation.name}: {mutation.path} no longer holds {mutation.old!r}")
        # A guarding test that moved would make pytest exit 4 (not 1): say so before a long run.
        lost = [(m, t) for m in chosen for t in m.tests if not (ROOT / t.partition("::")[0]).exists()]
        for mutation, test in lost:
            print(f"TESTS MOVED {mutation.name}: {test} does not exist")
        print(f"{len(chosen) - len(stale)} of {len(chosen)} patches apply; {len(lost)} guarding test paths missing")
        return 1 if stale or lost else 0
    failures = 0
    for mutation in chosen:
        result = run(mutation, postgres=args.postgres)
        print(f"{result.verdict:<12} {result.seconds:6.1f}s  {mutation.name}", flush=True)
        if result.verdict != "caught":
            failures += 1
            if args.verbose or result.verdict != "NOT CAUGHT":
                print(result.output[-4000:], flush=True)
    print(f"{len(chosen) - failures} of {len(chosen)} mutations caught")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
