"""The import-linter contracts of ``pyproject.toml`` ([tool.importlinter]) hold: the layers of the package,
and the store owning its tables (no module outside ``app.store`` imports them or SQLAlchemy)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from app.idp.registry import PROVIDERS
from tests.paths import ROOT

STORE_CONTRACT = "The store owns its tables"


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    env = {"PYTHONPATH": str(cwd), "PATH": str(Path(sys.executable).parent)}
    return subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120, env=env
    )


def test_import_contracts_are_kept() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
    assert STORE_CONTRACT in result.stdout
    # The emulator's independence is among the contracts checked (a contract removed from pyproject fails).
    text = " ".join(result.stdout.split())
    for contract in (
        "The controller emulator is a package of its own: it imports nothing from app KEPT",
        "Only the demo and the CLI (app.demo, app.cli) may use the controller emulator KEPT",
    ):
        assert contract in text, result.stdout


@pytest.mark.parametrize(
    "statement",
    ["from app.store.tables import dirty", "from sqlalchemy import select", "import sqlalchemy.exc"],
)
def test_the_store_contract_catches_sql_outside_the_store(tmp_path: Path, statement: str) -> None:
    """The contract is not vacuous: a reconcile module reaching for a table or for SQLAlchemy breaks it."""
    shutil.copytree(ROOT / "app", tmp_path / "app", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "ziti_emulator", tmp_path / "ziti_emulator", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "app" / "reconcile" / "leak.py").write_text(f"{statement}\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    assert "1 broken" in result.stdout
    assert "app.reconcile.leak" in result.stdout


def test_contracts_forbid_package_cycles_and_keep_each_idp_apart() -> None:
    """The contracts that issue 14 asks for are configured (a run of ``lint-imports`` checks them above)."""
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    by_type = {(c["type"], tuple(c.get("ancestors", c.get("modules", ())))) for c in contracts}
    assert ("acyclic_siblings", ("app",)) in by_type
    independent = next(c["modules"] for c in contracts if c["type"] == "independence")
    assert {m.removeprefix("app.idp.") for m in independent} == set(PROVIDERS)
    layers = next(c["layers"] for c in contracts if c["type"] == "layers")
    assert layers.index("app.reconcile | app.idp") < layers.index("app.webhooks") < layers.index("app.scim")
    assert layers.index("app.scim") < layers.index("app.auth") < layers.index("app.store")


CORE = ("app/scim", "app/webhooks", "app/auth", "app/config.py", "app/server.py", "app/cli.py")


def _kind_comparisons(text: str, name: str) -> list[str]:
    """``x.kind == …``, ``x.kind in …``, ``table[x.kind]``: a branch on a source's IdP."""
    found = []
    for node in ast.walk(ast.parse(text, name)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(isinstance(o, ast.Attribute) and o.attr == "kind" for o in operands):
                found.append(f"{name}:{node.lineno}")
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Attribute):
            if node.slice.attr == "kind":
                found.append(f"{name}:{node.lineno}")
    return found


def test_the_core_never_branches_on_the_idp_kind() -> None:
    """Only ``app.idp.registry`` looks a source's kind up; adding an IdP touches no core module."""
    files = [p for name in CORE for p in sorted((ROOT / name).rglob("*.py")) or [ROOT / name]]
    assert len(files) > 20
    hits = [hit for path in files for hit in _kind_comparisons(path.read_text(), str(path.relative_to(ROOT)))]
    assert hits == []
    # The check sees each form of branch.
    branches = "if s.kind == 'zitadel': pass\nif s.kind in KINDS: pass\nx = TABLE[s.kind]\n"
    assert _kind_comparisons(branches, "example") == ["example:1", "example:2", "example:3"]
