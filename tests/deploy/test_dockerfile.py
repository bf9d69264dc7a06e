"""The Dockerfile and .dockerignore; the image build itself runs only where a Docker engine exists."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.deploy.support import ROOT, dockerfile, dockerignore_excludes, dockerignore_patterns


def test_base_image_user_and_command() -> None:
    instructions = dockerfile()
    froms = [i.args for i in instructions if i.name == "FROM"]
    assert froms == ["python:3.11-slim"]
    users = [index for index, i in enumerate(instructions) if i.name == "USER"]
    assert users, "the image must drop root"
    last_user = instructions[users[-1]].args
    uid = last_user.split(":")[0]
    assert uid not in ("root", "0") and uid.isdigit() and int(uid) >= 1000
    runs = [index for index, i in enumerate(instructions) if i.name == "RUN"]
    assert max(runs) < users[-1], "nothing runs as root after USER"
    entrypoint = next(i for i in instructions if i.name == "ENTRYPOINT").exec_form()
    cmd = next(i for i in instructions if i.name == "CMD").exec_form()
    assert entrypoint + cmd == ["ziti-scim", "serve", "--config", "/etc/ziti-scim/config.toml"]
    assert [i.args for i in instructions if i.name == "EXPOSE"] == ["8080"]
    assert any("pip install" in i.args for i in instructions if i.name == "RUN"), "installs the package"
    healthcheck = next(i for i in instructions if i.name == "HEALTHCHECK").args
    assert "/healthz" in healthcheck


def test_dockerignore_keeps_secrets_and_clutter_out_but_everything_copied_in() -> None:
    patterns = dockerignore_patterns()
    for path in (
        ".git/config",
        "tests/conftest.py",
        "deploy/compose/secrets/ziti-controller.env",
        "ziti-scim.db",
        "app/__pycache__/cli.cpython-311.pyc",
        ".venv-ci/bin/python",
        "bench/run.py",
    ):
        assert dockerignore_excludes(path, patterns), path
    for path in (
        "pyproject.toml",
        "app/cli.py",
        "app/store/migrations/env.py",
        "schemas/mappings/generic.json",
    ):
        assert not dockerignore_excludes(path, patterns), path
    copied = [i.args.split()[:-1] for i in dockerfile() if i.name == "COPY"]
    for sources in copied:
        for source in sources:
            if not source.endswith("*"):
                assert (ROOT / source).exists(), source
                assert not dockerignore_excludes(source, patterns), (
                    f"COPY {source} is excluded by .dockerignore"
                )


def _docker_engine() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return None
    try:
        info = subprocess.run([docker, "info"], capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return docker if info.returncode == 0 else None


def test_image_builds_and_runs_as_non_root() -> None:
    docker = _docker_engine()
    if docker is None:
        pytest.skip("no Docker engine here (`docker info` fails): the image build is checked where one runs")
    tag = "ziti-scim:test-build"
    subprocess.run([docker, "build", "-t", tag, str(ROOT)], check=True, timeout=1800)
    user = subprocess.run(
        [docker, "image", "inspect", "-f", "{{.Config.User}}", tag],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert user == "10001:10001"
    help_text = subprocess.run(
        [docker, "run", "--rm", tag, "--help"], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    assert "serve" in help_text
