"""No secret in clear in the deployment files: passwords and tokens are references (env files, Docker
secrets, Kubernetes secretKeyRef, *_env / *_file config keys), never values."""

from __future__ import annotations

import tomllib

import pytest
import yaml

from tests.deploy.support import ROOT, deployment_files, scan_mapping, scan_text


@pytest.mark.parametrize("path", deployment_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_file_holds_no_secret(path: object) -> None:
    from pathlib import Path

    assert isinstance(path, Path)
    text = path.read_text()
    findings = list(scan_text(text, path.name))
    if path.suffix in (".yml", ".yaml"):
        for document in yaml.safe_load_all(text):
            findings += list(scan_mapping(document))
            if isinstance(document, dict) and document.get("kind") == "ConfigMap":
                for name, body in document.get("data", {}).items():
                    if name.endswith(".toml"):
                        findings += list(scan_mapping(tomllib.loads(body)))
                        findings += list(scan_text(body, name))
    if path.suffix == ".toml":
        findings += list(scan_mapping(tomllib.loads(text)))
    assert findings == []


def test_the_scanner_catches_planted_secrets() -> None:
    """The check above would fail on the mistakes it guards against."""
    compose = {
        "services": {
            "ctrl": {"environment": {"ZITI_PWD": "hunter2hunter2"}},
            "scim": {"environment": ["ZITI_SCIM_ADMIN_TOKEN=s3cr3t-t0ken-value"]},
        }
    }
    assert len(list(scan_mapping(compose))) == 2
    k8s = {"env": [{"name": "ZITI_SCIM_ZITI_PASSWORD", "value": "plain"}]}
    assert list(scan_mapping(k8s))
    assert list(scan_mapping(tomllib.loads('[ziti]\npassword = "x"\n')))
    assert list(scan_text("ZITI_PWD=admin\n", ".env"))
    assert list(scan_text("url = postgresql://u:pa55@db/x\n", "c"))
    assert list(scan_text("token: eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.sig\n", "c"))
    assert list(scan_text("x: 9f8a7Bq2LmZ4xR1tY6wK3vN8pS5dH0jU\n", "c"))
    # references are fine
    assert not list(
        scan_mapping(
            {
                "POSTGRES_PASSWORD_FILE": "/run/secrets/postgres_password",
                "password_env": "ZITI_PWD",
                "ZITI_PWD": "${ZITI_PWD}",
            }
        )
    )
    assert not list(scan_text("ZITI_PWD=\n# ZITI_SCIM_DATABASE_URL=postgresql://u:<password>@db/x\n", "e"))
