"""Issue 15 items 6-11: authentik notification webhooks as authentik really sends them, on the live stack.

Bodies: the default body of ``authentik/events/models.py`` (``NotificationTransport.send_webhook``):
``{"body": "<action>: <context repr>", "severity", "user_email", "user_username", "event_user_email",
"event_user_username"}``, whose context names the model as ``authentik/events/utils.py``
``model_to_dict`` does (group pks as ``UUID.hex``); before 2024.10 it carries no request id, and no
version carries an event id or a time. The fake authentik API answers as ``authentik/core/api`` does,
including the 404 for an object the token's user may not see (``authentik/rbac``).
"""

from __future__ import annotations

import json
import logging
import textwrap
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.idp.conftest import API_TOKEN, FakeApi, Stack, StackFactory, source
from tests.paths import ROOT
from tests.support.waiting import wait_for

SECRET = "whk_1b9d7f3a5c2e4a6b8d0f"
INSPECT = "inspection-token-0123456789"
GROUP = "5d0a6c2e-91b4-4f37-8e2a-c6b19d3f7a05"
JDOE: dict[str, Any] = {
    "pk": 7,
    "username": "jdoe",
    "name": "Jane Doe",
    "email": "jane.doe@example.com",
    "is_active": True,
    "uid": "d1e178d29df82553538238a6042b7f596ef4d4e188a5d8eea9c54c0a22cc49ef",
    "groups": [],
    "groups_obj": [],
}


def default_body(action: str, app_model: str, pk: Any, name: str, path: str, method: str = "PATCH") -> bytes:
    """The default notification body of authentik ≤ 2024.8 (no request id in ``http_request``)."""
    context = {
        "model": {"app": "authentik_core", "model_name": app_model, "pk": pk, "name": name},
        "http_request": {"path": path, "method": method, "args": {}, "user_agent": "Mozilla/5.0"},
    }
    return json.dumps(
        {
            "body": f"{action}: {context!r}",
            "severity": "notice",
            "user_email": "admin@example.com",
            "user_username": "akadmin",
            "event_user_email": "admin@example.com",
            "event_user_username": "akadmin",
        }
    ).encode()


def post(stack: Stack, body: bytes, *, path: str = "/webhooks/authentik", secret: bool = True) -> httpx.Response:
    headers = {"Content-Type": "application/json", "User-Agent": "authentik@2023.10.7"}
    if secret:
        headers["Authorization"] = f"Bearer {SECRET}"
    return httpx.post(stack.url + path, content=body, headers=headers, timeout=30)


def roles(stack: Stack, external_id: str) -> list[str]:
    identity = stack.identity(external_id)
    assert identity is not None
    return sorted(identity.role_attributes or [])


def make(make_stack: StackFactory, fake_api: FakeApi, **options: Any) -> Stack:
    fake_api.users["7"] = json.loads(json.dumps(JDOE))
    return make_stack(
        source(
            "authentik",
            "authentik",
            INSPECT,
            webhook_secret=SECRET,
            authentik_url=fake_api.url,
            authentik_token=API_TOKEN,
            **options,
        )
    )


def test_group_side_membership_rename_and_delete_reach_the_identity(
    make_stack: StackFactory, fake_api: FakeApi
) -> None:
    stack = make(make_stack, fake_api)
    user_updated = default_body("model_updated", "user", 7, "Jane Doe", "/api/v3/core/users/7/")
    assert post(stack, user_updated).status_code == 200
    assert roles(stack, "7") == []
    # Adding jdoe from the group's page (Directory > Groups > ziti-admins > Users > Add existing user):
    # authentik fires model_updated on the group, none on the user.
    fake_api.groups[GROUP] = {"pk": GROUP, "name": "ziti-admins", "users": [7]}
    hexpk = uuid.UUID(GROUP).hex
    group_updated = default_body("model_updated", "group", hexpk, "ziti-admins", f"/api/v3/core/groups/{GROUP}/")
    assert post(stack, group_updated).status_code == 200
    assert roles(stack, "7") == ["ziti-admins"]
    # Renamed: the same screen, the same bytes; the group is re-read and keeps its identity.
    fake_api.groups[GROUP]["name"] = "ziti-operators"
    assert post(stack, group_updated).status_code == 200
    assert roles(stack, "7") == ["ziti-operators"]
    # Deleted: model_deleted on the group is positive evidence.
    del fake_api.groups[GROUP]
    deleted = default_body("model_deleted", "group", hexpk, "ziti-operators", f"/api/v3/core/groups/{GROUP}/")
    assert post(stack, deleted).status_code == 200
    assert roles(stack, "7") == []
    assert stack.identity("7") is not None


def test_two_identical_default_body_deliveries_both_take_effect(make_stack: StackFactory, fake_api: FakeApi) -> None:
    stack = make(make_stack, fake_api)
    body = default_body("model_updated", "user", 7, "Jane Doe", "/api/v3/core/users/7/")
    assert post(stack, body).status_code == 200
    assert stack.identity("7").disabled_at is None
    # authentik 2023.10.7: a deactivation through the same API path sends exactly the same bytes.
    fake_api.users["7"]["is_active"] = False
    assert post(stack, body).status_code == 200
    assert stack.identity("7").disabled_at is not None


@pytest.mark.parametrize("where", ["path", "body"])
def test_the_secret_works_without_header_mappings(
    make_stack: StackFactory, fake_api: FakeApi, where: str
) -> None:
    # Before authentik 2025.4 a notification transport has no header mapping (webhook_mapping_headers):
    # the secret goes in the URL path (default body) or in the body mapping.
    stack = make(make_stack, fake_api)
    if where == "path":
        body = default_body("model_created", "user", 7, "Jane Doe", "/api/v3/core/users/", "POST")
        assert post(stack, body, path="/webhooks/authentik/whk_wrong", secret=False).status_code == 401
        assert post(stack, body, path="/webhooks/authentik", secret=False).status_code == 401
        assert stack.identity("7") is None
        assert post(stack, body, path=f"/webhooks/authentik/{SECRET}", secret=False).status_code == 200
    else:
        mapped = {
            "webhook_secret": SECRET,
            "action": "model_created",
            "event_uuid": "0c5f6a0e-7b1d-4a55-8d0e-1b2c3d4e5f60",
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "model": {"app": "authentik_core", "model_name": "user", "pk": 7, "name": "Jane Doe"},
            "user": {**JDOE, "groups": []},
        }
        wrong = json.dumps({**mapped, "webhook_secret": "whk_wrong"}).encode()
        assert post(stack, wrong, secret=False).status_code == 401
        assert stack.identity("7") is None
        assert post(stack, json.dumps(mapped).encode(), secret=False).status_code == 200
    assert stack.identity("7").name == "jdoe"


def test_a_404_from_a_partly_permissioned_token_deletes_nothing(make_stack: StackFactory, fake_api: FakeApi) -> None:
    stack = make(make_stack, fake_api)
    body = default_body("model_updated", "user", 7, "Jane Doe", "/api/v3/core/users/7/")
    assert post(stack, body).status_code == 200 and stack.identity("7") is not None
    fake_api.superuser = False
    fake_api.hidden.add("7")  # the token's user lost its object permission on jdoe
    assert post(stack, body).status_code == 200
    assert stack.identity("7") is not None
    # A model_deleted event is positive evidence, whatever the token sees.
    deleted = default_body("model_deleted", "user", 7, "Jane Doe", "/api/v3/core/users/7/", "DELETE")
    assert post(stack, deleted).status_code == 200
    assert stack.identity("7") is None


def test_a_lost_delivery_is_repaired_by_the_periodic_pull(make_stack: StackFactory, fake_api: FakeApi) -> None:
    stack = make(make_stack, fake_api, authentik_pull_interval=0.2)
    wait_for(lambda: stack.identity("7") is not None)  # the pull alone brings jdoe in
    fake_api.groups[GROUP] = {"pk": GROUP, "name": "ziti-admins", "users": [7]}
    fake_api.users["7"]["is_active"] = False  # both notifications were lost
    wait_for(lambda: stack.identity("7").disabled_at is not None and roles(stack, "7") == ["ziti-admins"])


def test_the_pull_never_deletes_what_the_token_cannot_see(make_stack: StackFactory, fake_api: FakeApi) -> None:
    fake_api.superuser = False
    stack = make(make_stack, fake_api, authentik_pull_interval=0.2)
    wait_for(lambda: stack.identity("7") is not None)
    fake_api.hidden.add("7")
    fake_api.users["8"] = {**JDOE, "pk": 8, "username": "bob", "email": "bob@example.com"}
    wait_for(lambda: stack.identity("8") is not None)  # later pulls ran
    assert stack.identity("7") is not None


# --- the documented body mapping, executed as authentik would (items 7 and 11) --------------------


class _Manager:
    def __init__(self, items: list[Any]) -> None:
        self.items = items

    def all(self) -> list[Any]:
        return self.items


class _Obj:
    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


def documented_mapping() -> Callable[..., dict[str, Any]]:
    """The body mapping of docs/idp/authentik.md, as a function of the variables a notification mapping
    has (authentik/events/models.py NotificationWebhookMapping: ``notification``, ``user``, ``request``)
    plus the evaluator's ``ak_user_by``."""
    text = (ROOT / "docs" / "idp" / "authentik.md").read_text(encoding="utf-8")
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    body = "\n".join("    " + line for line in textwrap.dedent(code).splitlines())
    namespace: dict[str, Any] = {}
    exec(f"def mapping(notification, user, request, ak_user_by):\n{body}\n", namespace)  # noqa: S102
    return namespace["mapping"]  # type: ignore[no-any-return]


def _notification(action: str, model: dict[str, Any]) -> Any:
    created = _Obj(isoformat=lambda: "2026-04-21T09:14:03.512345+00:00")
    event = _Obj(action=action, pk=uuid.UUID("0c5f6a0e-7b1d-4a55-8d0e-1b2c3d4e5f60"), created=created,
                 context={"model": model})
    return _Obj(event=event)


@pytest.mark.parametrize("release", ["2025.12", "2026.2"])
def test_the_documented_body_mapping_sends_authentik_groups(
    make_stack: StackFactory, fake_api: FakeApi, release: str
) -> None:
    group = _Obj(pk=uuid.UUID(GROUP), name="ziti-admins")
    django_group = _Obj(pk=1, name="django-auth-group")
    fields = {"pk": 7, "uid": JDOE["uid"], "username": "jdoe", "name": "Jane Doe", "email": JDOE["email"],
              "is_active": True}
    if release == "2025.12":  # u.groups: Django's auth groups; authentik's are u.ak_groups
        jdoe = _Obj(**fields, groups=_Manager([django_group]), ak_groups=_Manager([group]))
    else:  # 2026.2+: u.groups are authentik's groups
        jdoe = _Obj(**fields, groups=_Manager([group]))
    mapping = documented_mapping()
    model = {"app": "authentik_core", "model_name": "user", "pk": 7, "name": "Jane Doe"}
    sent = mapping(_notification("model_updated", model), _Obj(username="akadmin"), None,
                   lambda **query: jdoe if query == {"pk": 7} else None)
    assert sent["user"]["groups"] == [{"pk": GROUP, "name": "ziti-admins"}]

    stack = make(make_stack, fake_api)
    stack.pin_clock(time.time())
    sent["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    assert post(stack, json.dumps(sent).encode()).status_code == 200
    assert roles(stack, "7") == ["ziti-admins"]
    deleted = mapping(_notification("model_deleted", model), None, None, lambda **query: None)
    assert deleted["user"] is None and deleted["model"]["pk"] == 7


def test_a_default_body_delivery_is_not_logged_as_webhook_none(
    make_stack: StackFactory, fake_api: FakeApi, caplog: pytest.LogCaptureFixture
) -> None:
    stack = make(make_stack, fake_api)
    with caplog.at_level(logging.INFO, logger="ziti_scim.webhooks"):
        assert post(stack, default_body("model_updated", "user", 7, "Jane Doe", "/api/v3/core/users/7/")).json()[
            "status"
        ] == "ok"
    lines = [r.getMessage() for r in caplog.records if r.name == "ziti_scim.webhooks"]
    assert any("webhook (no id) for source authentik: applied" in line for line in lines), lines
    assert not any("webhook None" in line for line in lines)
