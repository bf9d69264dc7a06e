"""Request validation against the real spec and transport-level errors (controller-api.md §1, §10)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from emu_support import Emu, error_of

from ziti_emulator import load_spec, validate_request_body
from ziti_emulator.spec import check_request_body

GOOD_IDENTITY = {
    "name": "alice",
    "type": "User",
    "isAdmin": False,
    "externalId": None,
    "authPolicyId": None,
    "roleAttributes": None,
    "tags": {"scimSource": "okta", "n": 1, "flag": True},
    "unknownField": "ignored like the controller does",
}


def test_spec_is_loaded_once(spec_path: Path) -> None:
    assert load_spec(spec_path) is load_spec(str(spec_path))


def test_validate_request_body_standalone(spec_path: Path) -> None:
    spec = load_spec(spec_path)
    assert validate_request_body(spec, "POST", "/identities", GOOD_IDENTITY) == []
    assert validate_request_body(spec, "post", "/edge/management/v1/identities", {"name": "x"}) == [
        "isAdmin in body is required",
        "type in body is required",
    ]
    assert validate_request_body(spec, "PATCH", "/identities/{id}", {"name": None}) == []  # x-nullable
    assert validate_request_body(spec, "PUT", "/identities/Zk3n.9Xa2", {"name": "x"}) != []
    enum = validate_request_body(spec, "POST", "/identities", {**GOOD_IDENTITY, "type": "Robot"})
    assert enum == ["type in body should be one of [User Device Service Router Default]"]
    assert validate_request_body(spec, "POST", "/identities/{id}/disable", {}) == [
        "durationMinutes in body is required"
    ]
    assert validate_request_body(spec_path, "GET", "/identities", None) == []  # no body schema
    too_short = validate_request_body(spec, "POST", "/authenticate", {"username": "abc", "password": "abcde"})
    assert too_short == ["username in body should be at least 4 chars long"]


def test_type_mismatches_are_go_unmarshal_errors(spec_path: Path) -> None:
    spec = load_spec(spec_path)
    (problem,) = check_request_body(spec, "POST", "/identities", {**GOOD_IDENTITY, "isAdmin": "no"})
    assert problem.kind == "parse"
    assert (
        "cannot unmarshal string into Go struct field IdentityCreate.isAdmin of type bool" in problem.reason
    )


def test_server_rejects_and_records_bad_bodies(emu: Emu, admin: httpx.Client) -> None:
    missing = admin.post("/identities", json={"name": "x"})
    assert missing.status_code == 400
    err = error_of(missing)
    assert err["code"] == "COULD_NOT_VALIDATE"
    assert err["cause"] == {"field": "isAdmin", "reason": "isAdmin in body is required", "value": "<nil>"}
    wrong_type = admin.post("/identities", json={"name": "x", "type": "User", "isAdmin": "no"})
    assert wrong_type.status_code == 400
    assert error_of(wrong_type)["code"] == "COULD_NOT_PARSE_BODY"
    violations = emu.state.spec_violations
    assert {v["template"] for v in violations} == {"/identities"}
    assert violations[0] == {
        "method": "POST",
        "path": "/edge/management/v1/identities",
        "template": "/identities",
        "error": "isAdmin in body is required",
    }
    emu.state.spec_violations.clear()
    assert admin.post("/identities", json=GOOD_IDENTITY).status_code == 201
    assert emu.state.spec_violations == []


def test_without_spec_the_builtin_checks_still_apply(make_emu: Callable[..., Emu]) -> None:
    emu = make_emu()
    with emu.admin() as client:
        missing = client.post("/identities", json={"name": "x", "type": "User"})
        assert error_of(missing)["cause"]["field"] == "isAdmin"
        bad_enum = client.post("/identities", json={"name": "x", "type": "Robot", "isAdmin": False})
        assert error_of(bad_enum)["cause"]["value"] == "Robot"
        assert error_of(client.post("/identities", json=[1]))["code"] == "COULD_NOT_PARSE_BODY"
    assert emu.state.spec_violations == []


def test_malformed_json_content_type_and_size(emu: Emu, admin: httpx.Client) -> None:
    malformed = admin.post("/identities", content=b'{"name": ', headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400
    assert error_of(malformed)["code"] == "COULD_NOT_PARSE_BODY"
    text = admin.post("/identities", content=b"name=x", headers={"Content-Type": "text/plain"})
    assert text.status_code == 400 and error_of(text)["cause"]["field"] == "Content-Type"
    huge = {"name": "x", "type": "User", "isAdmin": False, "appData": {"blob": "a" * (1024 * 1024)}}
    too_large = admin.post("/identities", json=huge)
    assert too_large.status_code == 413
    assert error_of(too_large)["code"] == "REQUEST_ENTITY_TOO_LARGE"
    chunked = admin.post(
        "/identities",
        content=iter([b"{" + b" " * 600_000, b" " * 600_000 + b"}"]),
        headers={"Content-Type": "application/json"},
    )
    assert chunked.status_code == 413  # enforced without a Content-Length too
    assert len(emu.state.spec_violations) == 2


def test_unknown_paths_verbs_and_accept(emu: Emu, admin: httpx.Client) -> None:
    missing = admin.get("/no-such-thing")
    assert missing.status_code == 404 and error_of(missing)["code"] == "NOT_FOUND"
    verb = admin.delete("/identities")
    assert verb.status_code == 405 and error_of(verb)["code"] == "METHOD_NOT_ALLOWED"
    assert admin.get("/identities/").status_code == 404  # no slash redirects
    not_json = httpx.get(emu.mgmt + "/identities", headers={"Accept": "text/html"})
    assert not_json.status_code == 401 and not_json.content == b""
    types = admin.get("/identity-types").json()["data"]
    assert [t["id"] for t in types] == ["Default", "Router"]


def test_an_emulator_bug_is_a_500_envelope_not_a_traceback(
    emu: Emu, admin: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(identity_id: str) -> bool:
        raise RuntimeError("boom")

    monkeypatch.setattr(emu.state, "has_session", broken)
    response = admin.get("/identities")
    assert response.status_code == 500
    assert error_of(response)["code"] == "UNHANDLED"
    assert "Traceback" not in response.text and "boom" not in response.text
    assert admin.head("/identity-types").status_code == 200


@pytest.mark.parametrize("missing", ["jsonschema", "yaml"])
def test_without_the_emulator_extra_a_spec_is_refused_with_one_line(
    missing: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """jsonschema/PyYAML are the optional ``emulator`` extra: ``None`` in sys.modules makes the import fail."""
    from app.cli import main
    from ziti_emulator import SpecValidationUnavailable, create_emulator_app, validation_available

    monkeypatch.setitem(sys.modules, missing, None)
    assert not validation_available()
    with pytest.raises(SpecValidationUnavailable, match=r"pip install 'ziti-scim\[emulator\]'"):
        load_spec(tmp_path / "management.yml")
    # Without a spec the emulator needs neither.
    assert create_emulator_app(admin_password="pw").state.emulator.spec is None
    assert main(["emulator", "--port", "0", "--spec", str(tmp_path / "management.yml")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("ziti-scim: validating request bodies against ") and "\n" not in err, err
