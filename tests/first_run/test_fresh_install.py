"""Issue 9 items 1-2: the README's first command works on a fresh machine.

A fresh virtual environment gets ``pip install <repo>`` and nothing else (pip's cache and index as
configured; no editable install, no extras): every module under ``app/`` must import, and
the emulator package ``ziti_emulator`` (shipped in the same distribution, its spec validation an optional
extra that is not installed here), and ``ziti-scim demo`` must serve, accept the exact ``curl`` it prints, and create the identity on its
controller emulator, as the commands it prints show. A runtime dependency missing from
``pyproject.toml`` fails here. The repository is copied first (without build outputs and virtual
environments), so pip's in-tree build never writes into the checkout.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.constants import STATUS_EXTENSION as STATUS
from tests.first_run.demo_process import run_printed_curl, running_demo
from tests.paths import ROOT

IGNORE = shutil.ignore_patterns(
    ".git", ".venv*", "__pycache__", "build", "dist", "*.egg-info", "*.db", "*.db-wal", "*.db-shm",
    ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis", "node_modules",
)

IMPORT_ALL = """
import importlib, importlib.util, json, pkgutil, sys
import app, ziti_emulator
failed, imported = {}, []
for package in (app, ziti_emulator):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        # __main__ modules run the CLI; the Alembic env script only runs inside Alembic.
        if info.name.endswith(".__main__") or info.name == "app.store.migrations.env":
            continue
        try:
            importlib.import_module(info.name)
            imported.append(info.name)
        except Exception as error:
            failed[info.name] = repr(error)
extras = {name: importlib.util.find_spec(name) is not None for name in ("jsonschema", "yaml")}
print(json.dumps({"files": [app.__file__, ziti_emulator.__file__], "imported": imported, "failed": failed,
                  "extras": extras}))
"""


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("first-run")
    source = root / "ziti-scim"
    shutil.copytree(ROOT, source, ignore=IGNORE)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q", str(source)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert install.returncode == 0, install.stderr[-4000:]
    shutil.rmtree(source)  # nothing may be imported from the source tree
    return venv


def test_every_module_imports_with_the_runtime_dependencies_alone(fresh_venv: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [str(fresh_venv / "bin" / "python"), "-c", IMPORT_ALL],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert all(f.startswith(str(fresh_venv)) for f in result["files"]), "both packages come from the venv"
    assert result["failed"] == {}
    assert len(result["imported"]) > 80 and "ziti_emulator.spec" in result["imported"]
    # The emulator's spec validation is the optional `emulator` extra: the plain install runs without it.
    assert result["extras"] == {"jsonschema": False, "yaml": False}


def test_the_demo_creates_the_identity_with_the_curl_it_prints(fresh_venv: Path, tmp_path: Path) -> None:
    command = [str(fresh_venv / "bin" / "ziti-scim")]
    with running_demo(command, tmp_path, "--port", "0", "--ziti-port", "0") as demo:
        status, body = run_printed_curl(demo.create_user_curl)
        assert status == 201, body
        created = json.loads(body)
        assert created[STATUS]["provisioningState"] == "synced"
        shown = subprocess.run(
            ["bash", "-c", f"set -euo pipefail\n{demo.show_identity_commands}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shown.returncode == 0, shown.stderr
        identities = json.loads(shown.stdout)["data"]
        assert [(i["id"], i["externalId"], i["name"], i["tags"]["managedBy"]) for i in identities] == [
            (created[STATUS]["identityId"], "alice@example.com", "alice", "ziti-scim")
        ]
    assert demo.process.returncode == 130, ("Ctrl-C ends the demo with the usual status", demo.stderr[-20:])
    assert not any("Traceback" in line for line in demo.stderr), demo.stderr
    unvalidated = [line for line in demo.stderr if "not validated against the controller's OpenAPI" in line]
    assert len(unvalidated) == 1, demo.stderr
    assert (tmp_path / "ziti-scim-demo.db").exists()
