"""The import-linter contracts of ``pyproject.toml`` ([tool.importlinter]) hold: the layers of the package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.paths import ROOT


def test_import_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
    # The emulator's independence is among the contracts checked (a contract removed from pyproject fails).
    text = " ".join(result.stdout.split())
    for contract in (
        "The controller emulator is a package of its own: it imports nothing from app KEPT",
        "Only the demo and the CLI (app.demo, app.cli) may use the controller emulator KEPT",
    ):
        assert contract in text, result.stdout
