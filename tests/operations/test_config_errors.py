"""Configuration errors stop ``ziti-scim serve`` at start-up with ONE line naming the key (issue 9 item 6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.cli import main
from app.config import load_config

GOOD_TOKEN = "a-source-token-of-32-characters!"

CASES: list[tuple[str, str, dict[str, str], str]] = [
    (
        "unknown source key",
        '[sources.a]\non_delet = "disable"\n',
        {},
        "sources.a.on_delet: unknown key",
    ),
    ("unknown top-level table", "[servr]\nport = 1\n", {}, "servr: unknown key"),
    ("unknown server key", "[server]\nprot = 8080\n", {}, "server.prot: unknown key"),
    ("wrong type", '[server]\nport = "8080"\n', {}, "server.port: must be an integer"),
    (
        "wrong enum value",
        '[sources.a]\non_delete = "archive"\n',
        {},
        "sources.a.on_delete: must be 'delete' or 'disable'",
    ),
    (
        "wrong unmappable value",
        '[sources.a]\nunmappable = "drop"\n',
        {},
        "sources.a.unmappable: must be 'store' or 'refuse'",
    ),
    ("wrong bool", '[sources.a]\npartial_put = "yes"\n', {}, "sources.a.partial_put: must be true or false"),
    ("negative rate", "[sources.a]\nrate_limit = -1\n", {}, "sources.a.rate_limit: must be greater than or equal to 0"),
    ("unknown oauth key", '[sources.a.oauth]\nisuer = "x"\n', {}, "sources.a.oauth.isuer: unknown key"),
    ("unknown policy key", '[sources.a.policy]\nunknwn = "ignore"\n', {}, "sources.a.policy.unknwn: unknown key"),
    ("unknown safety key", "[safety]\nbrake = 3\n", {}, "safety.brake: unknown key"),
    ("safety share above 1", "[safety]\nbrake_share = 2\n", {}, "safety.brake_share: must be less than or equal to 1"),
    (
        "same token on two sources",
        f'[sources.a]\ntokens = ["{GOOD_TOKEN}"]\n[sources.b]\n',
        {"ZITI_SCIM_SOURCE_B_TOKENS": GOOD_TOKEN},
        "sources.b.tokens: the same token as sources.a (each source needs its own)",
    ),
    (
        "short source token",
        '[sources.a]\ntokens = ["short"]\n',
        {},
        "sources.a.tokens: a bearer token must have at least 16 characters",
    ),
    (
        "short admin token in the environment",
        "",
        {"ZITI_SCIM_ADMIN_TOKEN": "fifteen-chars!!"},
        "ZITI_SCIM_ADMIN_TOKEN: the admin token must have at least 16 characters",
    ),
    (
        "short admin token in the file",
        '[server]\nadmin_token = "short"\n',
        {},
        "server.admin_token: the admin token must have at least 16 characters",
    ),
    (
        "password in the file",
        '[ziti]\npassword = "x"\n',
        {},
        "ziti.password: must not be written in the file: use password_env or password_file",
    ),
    (
        "bad webhook secret",
        '[sources.z]\nkind = "zitadel"\nwebhook_secret = 5\n',
        {},
        "sources.z.webhook_secret: must be a non-empty string or a list of them",
    ),
    (
        "removed ziti.reconcile_deadline",
        "[ziti]\nreconcile_deadline = 5.0\n",
        {},
        "ziti.reconcile_deadline: unknown key: removed, SCIM and webhook writes no longer wait for the "
        "controller; a source's wait_for_sync (seconds) keeps a short wait for a synced answer",
    ),
    (
        "bad source kind",
        '[sources.a]\nkind = "keycloak"\n',
        {},
        "sources.a.kind: must be 'generic', 'authentik', 'zitadel', 'asgardeo', 'entra' or 'okta'",
    ),
]


@pytest.mark.parametrize(("toml", "env", "line"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_configuration_error_is_one_line_naming_the_key(
    toml: str,
    env: dict[str, str],
    line: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("ZITI_SCIM_ADMIN_TOKEN", "ZITI_SCIM_DATABASE_URL", "ZITI_SCIM_ZITI_URL", "ZITI_SCIM_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "ziti-scim.toml"
    path.write_text(toml)
    database = tmp_path / "never-created.db"
    monkeypatch.setenv("ZITI_SCIM_DATABASE_URL", str(database))
    code = main(["serve", "--config", str(path), "--port", "1"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err == f"ziti-scim: configuration error: {line}\n"
    assert captured.out == ""
    assert not database.exists(), "nothing may start before the configuration is valid"


def test_repr_of_a_config_never_shows_a_secret() -> None:
    config = load_config(
        {
            "database": {"url": "postgresql://scim:db-password-1@db/scim"},
            "sources": {"z": {"kind": "zitadel", "webhook_secret": ["hook-secret-1", "hook-secret-2"]}},
        },
        {
            "ZITI_SCIM_ZITI_PASSWORD": "controller-password-1",
            "ZITI_SCIM_ADMIN_TOKEN": "admin-token-of-enough-length",
            "ZITI_SCIM_SOURCE_Z_TOKENS": GOOD_TOKEN,
            "ZITI_SCIM_SOURCE_Z_ZITADEL_TOKEN": "zitadel-api-token-1",
        },
    )
    text = repr(config) + str(config)
    for secret in (
        "db-password-1",
        "hook-secret-1",
        "hook-secret-2",
        "controller-password-1",
        "admin-token-of-enough-length",
        GOOD_TOKEN,
        "zitadel-api-token-1",
    ):
        assert secret not in text
    # The values themselves are intact for the code that uses them.
    assert config.ziti.password == "controller-password-1"
    assert config.sources["z"].options["webhook_secret"] == ["hook-secret-1", "hook-secret-2"]
    assert config.sources["z"].options["zitadel_token"] == "zitadel-api-token-1"
    assert config.database_url == "postgresql://scim:db-password-1@db/scim"
    assert "postgresql://scim:***@db/scim" in text


def test_known_options_are_typed_and_kept() -> None:
    config = load_config(
        {"sources": {"a": {"on_delete": "disable", "adopt": "refuse", "unmappable": "refuse", "rate_limit": 5}}},
        {},
    )
    options = config.sources["a"].options
    assert dict(options) == {"on_delete": "disable", "adopt": "refuse", "unmappable": "refuse", "rate_limit": 5}
