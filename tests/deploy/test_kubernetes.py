"""The Kubernetes example for a controller installed with the openziti Helm chart (controller-api.md §9)."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from app.config import ZitiConfig, load_config
from app.server import create_app
from tests.deploy.support import DEPLOY, dockerfile

K8S = DEPLOY / "kubernetes"
RELEASE_FULLNAME = "ziti-controller"  # release "ziti-controller": <fullname> keeps the name


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    by_kind: dict[str, dict[str, Any]] = {"Kustomization": kustomization}
    for resource in kustomization["resources"]:
        for document in yaml.safe_load_all((K8S / resource).read_text()):
            assert document["apiVersion"] and document["metadata"]["name"]
            by_kind[document["kind"]] = document
    return by_kind


def container(manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    containers = manifests["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def test_every_manifest_parses_and_is_listed() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


def test_admin_secret_is_mounted_with_secret_key_ref(manifests: dict[str, dict[str, Any]]) -> None:
    env = {e["name"]: e for e in container(manifests)["env"]}
    password = env["ZITI_SCIM_ZITI_PASSWORD"]
    assert "value" not in password
    assert password["valueFrom"]["secretKeyRef"] == {
        "name": f"{RELEASE_FULLNAME}-admin-secret",
        "key": "admin-password",
    }
    for name, entry in env.items():
        assert "value" not in entry, f"{name} must come from a Secret"


def test_config_reaches_the_management_api_inside_the_cluster(manifests: dict[str, dict[str, Any]]) -> None:
    config_toml = manifests["ConfigMap"]["data"]["config.toml"]
    env_names = {e["name"] for e in container(manifests)["env"]}
    raw = tomllib.loads(config_toml)
    assert raw["ziti"]["password_env"] in env_names
    config = load_config(raw, {raw["ziti"]["password_env"]: "from-the-chart-secret"})
    assert config.ziti.password == "from-the-chart-secret"
    namespace = manifests["Kustomization"]["namespace"]
    url = urlparse(config.ziti.url or "")
    # the management API shares the client listener: Service <fullname>-client, clientApi.advertisedPort 443
    assert (url.scheme, url.hostname, url.port) == (
        "https",
        f"{RELEASE_FULLNAME}-client.{namespace}.svc",
        443,
    )
    assert config.ziti.username == "admin"
    # the CA comes from the chart's trust-manager Bundle ConfigMap
    volumes = {v["name"]: v for v in manifests["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["name"]: m for m in container(manifests)["volumeMounts"]}
    ca = volumes["controller-ca"]["configMap"]
    assert ca["name"] == f"{RELEASE_FULLNAME}-ctrl-plane-cas"
    assert ca["items"] == [{"key": "ctrl-plane-cas.crt", "path": "ctrl-plane-cas.crt"}]
    assert config.ziti.ca_bundle == str(Path(mounts["controller-ca"]["mountPath"]) / "ctrl-plane-cas.crt")
    assert mounts["config"]["mountPath"] == "/etc/ziti-scim/config.toml"
    assert config.database_url.startswith(mounts["data"]["mountPath"] + "/")


def test_pod_runs_as_the_image_user_and_probes_real_routes(manifests: dict[str, dict[str, Any]]) -> None:
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    user = next(i for i in reversed(dockerfile()) if i.name == "USER").args
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}" == user
    spec = container(manifests)
    assert spec["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["securityContext"]["allowPrivilegeEscalation"] is False
    assert spec["args"] == ["serve", "--config", "/etc/ziti-scim/config.toml"]
    assert spec["ports"] == [{"name": "http", "containerPort": 8080}]
    config = load_config(tomllib.loads(manifests["ConfigMap"]["data"]["config.toml"]), {})
    assert config.port == 8080
    # the routes do not depend on the controller; leave it out so no client is built
    app = create_app(dataclasses.replace(config, ziti=ZitiConfig(), database_url="sqlite+aiosqlite://"))
    routes = {getattr(route, "path", None) for route in app.routes}
    assert spec["livenessProbe"]["httpGet"]["path"] in routes
    assert spec["readinessProbe"]["httpGet"]["path"] in routes
    service = manifests["Service"]["spec"]
    assert service["ports"][0]["targetPort"] == "http"
    assert service["selector"] == manifests["Deployment"]["spec"]["selector"]["matchLabels"]
