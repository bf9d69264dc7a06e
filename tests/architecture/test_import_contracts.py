"""The import-linter contracts of ``pyproject.toml`` ([tool.importlinter]) hold: the layers of the package,
and the store owning its tables (no module outside ``app.store`` imports them or SQLAlchemy)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
