"""docker-compose.yml and the ziti-scim configuration it mounts (issue 5 acceptance 6)."""

from __future__ import annotations

import re
import tomllib
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from app.config import load_config
from app.reconcile.settings import source_settings
from tests.deploy.support import DEPLOY, ROOT

CONTROLLER_IMAGE = "docker.io/openziti/ziti-controller"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(document, dict)
    return document


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's ``${NAME:-default}`` / ``${NAME}`` substitution."""
    env = env or {}

    def one(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(3) or ""
        return env.get(name) or default

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:?-([^}]*))?\}", one, value)


def published(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    out = []
    for port in service.get("ports", []):
        host, host_port, container_port = interpolate(str(port)).rsplit(":", 2)
        out.append((host, int(host_port), int(container_port)))
    return out


def test_services_images_and_ports(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"ziti-controller", "ziti-scim", "postgres"} <= set(services)
    controller = services["ziti-controller"]
    assert interpolate(controller["image"]).startswith(CONTROLLER_IMAGE + ":")
    assert published(controller) == [("127.0.0.1", 1280, 1280)]
    assert controller["healthcheck"]["test"] == ["CMD", "ziti", "agent", "stats"]
    assert controller["environment"]["ZITI_CTRL_ADVERTISED_PORT"] == "1280"
    scim = services["ziti-scim"]
    assert scim["build"] == "."
    assert published(scim) == [("127.0.0.1", 8080, 8080)]
    assert scim["command"] == ["serve", "--config", "/etc/ziti-scim/config.toml"]
    assert scim["read_only"] is True and scim["cap_drop"] == ["ALL"]
    postgres = services["postgres"]
    assert postgres["profiles"] == ["postgres"]
    assert postgres["image"].startswith("docker.io/library/postgres:")
    assert "ports" not in postgres, "PostgreSQL stays on the compose network"
    # ziti-scim starts without the optional profile
    assert scim["depends_on"]["postgres"]["required"] is False
    for name, service in services.items():
        if name != "postgres":
            assert "profiles" not in service, f"{name} must run without a profile"


def test_documented_images_and_ports_match(compose: dict[str, Any]) -> None:
    readme = (DEPLOY / "README.md").read_text()
    for fact in (CONTROLLER_IMAGE, "**1280**", "**8080**", "**10001**", "`postgres` profile"):
        assert fact in readme


def test_secrets_come_from_env_files_and_docker_secrets(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("ziti-controller", "ziti-scim"):
        for env_file in services[name]["env_file"]:
            path = ROOT / env_file
            assert path.parent == DEPLOY / "compose" / "secrets"
            example = path.with_name(path.name + ".example")
            assert example.is_file(), f"{example} documents what {env_file} holds"
    assert "ZITI_PWD=" in (DEPLOY / "compose/secrets/ziti-controller.env.example").read_text()
    postgres = services["postgres"]
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert postgres["secrets"] == ["postgres_password"]
    assert compose["secrets"]["postgres_password"]["file"] == "deploy/compose/secrets/postgres_password"
    ignored = (DEPLOY / "compose/secrets/.gitignore").read_text().split()
    assert ignored[-3:] == ["*", "!.gitignore", "!*.example"], "real secret files are never committed"


def test_mounted_config_is_accepted_by_ziti_scim_and_points_at_the_controller(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    scim = services["ziti-scim"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in scim["volumes"]}
    source = mounts["/etc/ziti-scim/config.toml"]
    config_file = ROOT / source
    assert config_file == DEPLOY / "compose" / "config.toml"
    raw = tomllib.loads(config_file.read_text())
    url = interpolate(scim["environment"]["ZITI_SCIM_ZITI_URL"])
    env = {
        "ZITI_PWD": "a-password-from-the-env-file",
        "ZITI_SCIM_ZITI_URL": url,
        "ZITI_SCIM_SOURCE_AUTHENTIK_TOKENS": "bearer-token-from-the-env-file",
    }
    config = load_config(raw, env)
    assert config.ziti.password == "a-password-from-the-env-file", "password_env must name the env-file key"
    assert config.sources["authentik"].token_hashes, "tokens come from ZITI_SCIM_SOURCE_<NAME>_TOKENS"
    for source_config in config.sources.values():
        source_settings(source_config)
    # the controller is reached by its advertised name (the certificate's SAN), on 1280, over TLS
    parsed = urlparse(config.ziti.url or "")
    alias = interpolate(services["ziti-controller"]["networks"]["ziti"]["aliases"][0])
    assert (parsed.scheme, parsed.hostname, parsed.port) == ("https", alias, 1280)
    assert interpolate(services["ziti-controller"]["environment"]["ZITI_CTRL_ADVERTISED_ADDRESS"]) == alias
    assert (config.host, config.port) == ("0.0.0.0", 8080)
    # the CA bundle is the file the controller-ca job writes into the shared volume
    ca_volume, ca_dir = next(v.split(":")[:2] for v in scim["volumes"] if v.startswith("ziti-ca:"))
    job = services["controller-ca"]
    job_dir = next(v.split(":")[1] for v in job["volumes"] if v.startswith(ca_volume + ":"))
    written = re.search(r"cp \S+ (\S+)", " ".join(job["command"]))
    assert written is not None
    assert config.ziti.ca_bundle == written.group(1).replace(job_dir, ca_dir, 1)
    assert "pki/root/certs/root.cert" in " ".join(job["command"])
    assert job["depends_on"]["ziti-controller"]["condition"] == "service_healthy"


def test_sqlite_lives_on_the_data_volume(compose: dict[str, Any]) -> None:
    raw = tomllib.loads((DEPLOY / "compose" / "config.toml").read_text())
    volumes = compose["services"]["ziti-scim"]["volumes"]
    data_dir = next(v.split(":")[1] for v in volumes if v.startswith("ziti-scim-data:"))
    assert raw["database"]["url"].startswith(data_dir + "/")
    assert set(compose["volumes"]) >= {"ziti-controller", "ziti-ca", "ziti-scim-data", "postgres-data"}
