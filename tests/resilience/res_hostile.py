"""Hypothesis strategies for hostile SCIM input: strings, JSON values, mutated users, filters, PATCH
operations, URL paths and bearer tokens; and the invariants every answer must keep."""

from __future__ import annotations

import base64
import json
import os
import string
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from app.constants import ENTERPRISE_EXTENSION as ENTERPRISE
from app.constants import STATUS_EXTENSION as STATUS
from app.constants import ZITI_EXTENSION as ZITI
from tests.resilience.res_support import ERROR, PATCH, USER

SCIM_ERRORS = {400, 401, 404, 409, 412, 413, 415, 429}

RANDOM = bool(os.environ.get("RESILIENCE_RANDOM"))
"""Set to explore with fresh random seeds (and ``RESILIENCE_EXAMPLES`` times more examples); by default
the examples are derived from the test (``derandomize``), so the suite is repeatable."""
SCALE = float(os.environ.get("RESILIENCE_EXAMPLES", "1"))


def bounded(examples: int) -> settings:
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=None,
        database=None,
        derandomize=not RANDOM,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


# -- strings ---------------------------------------------------------------------------------------

SQLISH = [
    "' OR 1=1 --",
    '"; DROP TABLE resources; --',
    "'; DELETE FROM resources WHERE '1'='1",
    "x') OR ('1'='1",
    "1; SELECT pg_sleep(5); --",
    "' UNION SELECT data FROM resources --",
    "%",
    "_",
    "%_%",
    "\\",
    "\\%",
    "a%b_c",
    "*",
    "' OR ''='",
]
JSONISH = [
    '{"$ne": null}',
    '"}]},{"userName":"evil"}',
    '{"userName":"x"}',
    "null",
    "true",
    "[]",
    "{}",
    '\\"',
    "\\u0000",
    "</script><script>alert(1)</script>",
    "${jndi:ldap://127.0.0.1/x}",
    "{{7*7}}",
    '"',
]
UNICODE = [
    "\u0000",
    "a\u0000b",
    "\u202eevil\u202c",
    "\u200b",
    "e\u0301",
    "\u00e9",
    "\ufeffbom",
    "Stra\u00dfe",
    "STRASSE",
    "\u0130stanbul",
    "\u0131",
    "\u212a",
    "\u01c5",
    "\ufb01",
    "\U0001f600",
    "\U0010ffff",
    "\ud800",
    "\udfff\ud800",
    "\t\n\r",
    "\x7f\x1b[31m",
    "\u2028\u2029",
    "\u0627\u0644\u0639\u0631\u0628\u064a\u0629",
    "\u05e9\u05dc\u05d5\u05dd",
]
SPECIALS = SQLISH + JSONISH + UNICODE

any_char_text = st.text(st.characters(codec=None), max_size=40)
"""Any code point, lone surrogates included (they travel as JSON escapes)."""

huge_text = st.builds(
    lambda chunk, count: chunk * count,
    st.sampled_from(["a", "\u00df", "\U0001f600", "e\u0301", "%_", "' OR 1=1 --"]),
    st.integers(min_value=1_000, max_value=60_000),
)

hostile_text = st.one_of(
    st.sampled_from(SPECIALS),
    any_char_text,
    st.builds(lambda a, b: a + b, st.sampled_from(SPECIALS), any_char_text),
    huge_text,
)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    hostile_text,
)

USER_ATTRIBUTES = [
    "schemas",
    "id",
    "externalId",
    "meta",
    "userName",
    "name",
    "displayName",
    "nickName",
    "userType",
    "preferredLanguage",
    "locale",
    "timezone",
    "active",
    "password",
    "emails",
    "groups",
    "roles",
    "entitlements",
    "members",
    "UserName",
    "USERNAME",
    "emails.value",
    ENTERPRISE,
    ZITI,
    STATUS,
    f"{ENTERPRISE}:department",
    f"{USER}:userName",
]


def json_values(max_leaves: int = 10) -> st.SearchStrategy[Any]:
    return st.recursive(
        json_scalars,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(
                st.one_of(st.sampled_from(USER_ATTRIBUTES), any_char_text), children, max_size=4
            )
        ),
        max_leaves=max_leaves,
    )


def encode(body: Any) -> bytes:
    """JSON as a hostile client sends it: NaN/Infinity allowed, every non-ASCII character escaped (so lone
    surrogates can travel)."""
    return json.dumps(body, ensure_ascii=True, allow_nan=True).encode()


# -- users and mutations ---------------------------------------------------------------------------


def valid_user(name: str, email: str) -> dict[str, Any]:
    return {
        "schemas": [USER, ENTERPRISE],
        "userName": name,
        "displayName": f"Display {name}",
        "name": {"givenName": "Given", "familyName": "Family"},
        "emails": [{"value": email, "type": "work", "primary": True}],
        "active": True,
        "roles": [{"value": "vpn"}],
        ENTERPRISE: {"department": "Ops"},
    }


@st.composite
def mutated_user(draw: st.DrawFn, taken: list[str]) -> dict[str, Any]:
    """A valid user with 0–4 random mutations: set (anywhere, any value), delete, retype, re-case."""
    suffix = draw(st.text(string.ascii_lowercase + string.digits, min_size=8, max_size=8))
    user = valid_user(f"mut-{suffix}", f"mut-{suffix}@example.com")
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        kind = draw(st.sampled_from(["set", "set", "delete", "nested", "taken", "case"]))
        key = draw(st.sampled_from(USER_ATTRIBUTES))
        if kind == "set":
            user[key] = draw(json_values())
        elif kind == "delete":
            user.pop(draw(st.sampled_from(sorted(user))), None)
        elif kind == "nested":
            target = draw(st.sampled_from(["name", "emails", "roles", ENTERPRISE]))
            value = user.get(target)
            if isinstance(value, list) and value and isinstance(value[0], dict):
                value[0][draw(st.sampled_from(["value", "type", "primary", "display", "$ref"]))] = draw(
                    json_values(4)
                )
            elif isinstance(value, dict):
                value[draw(st.sampled_from(["givenName", "familyName", "department", "manager", "x"]))] = (
                    draw(json_values(4))
                )
        elif kind == "taken" and taken:
            # Another user's userName or email: must be refused (uniqueness), never merged.
            if draw(st.booleans()):
                user["userName"] = draw(st.sampled_from(taken))
            else:
                user["emails"] = [{"value": draw(st.sampled_from(taken)), "primary": True}]
        elif kind == "case":
            user = {draw(st.sampled_from([k, k.upper(), k.lower()])): v for k, v in user.items()}
    return user


# -- filters ---------------------------------------------------------------------------------------

STRING_PATHS = [
    "userName",
    "displayName",
    "nickName",
    "externalId",
    "name.familyName",
    "name.givenName",
    "name.formatted",
    "emails",
    "emails.value",
    "emails.type",
    "emails.display",
    "roles",
    "roles.value",
    "roles.type",
    "entitlements.value",
    "groups",
    "groups.value",
    "groups.display",
    "id",
    "meta.resourceType",
    "title",
    f"{ENTERPRISE}:department",
    f"{ENTERPRISE}:employeeNumber",
    f"{ENTERPRISE}:manager.value",
    f"{ZITI}:roleAttributes",
    f"{USER}:userName",
    f"{USER}:name.familyName",
]
BOOL_PATHS = ["active", "emails.primary", "roles.primary"]
DATE_PATHS = ["meta.created", "meta.lastModified"]
UNKNOWN_PATHS = ["foo", "name.nope", "emails.nope", "urn:example:nope:attr", "userName.value", "meta.version"]
VALUE_PATHS = ["emails", "roles", "entitlements", "groups"]
SUB_ATTRIBUTES = {
    "emails": ["value", "type", "primary", "display"],
    "roles": ["value", "type", "primary", "display"],
    "entitlements": ["value", "type", "primary"],
    "groups": ["value", "display", "type"],
}
OPERATORS = ["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"]


def recase(draw: st.DrawFn, word: str) -> str:
    return draw(st.sampled_from([word, word.upper(), word.lower(), word.capitalize()]))


def quoted(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


@st.composite
def comparison(draw: st.DrawFn, pool: list[str], paths: list[str] | None = None) -> str:
    kind = draw(st.sampled_from(["string", "string", "string", "bool", "date", "unknown", "present"]))
    if paths is not None:
        kind = "sub"
    if kind == "present":
        return f"{draw(st.sampled_from(STRING_PATHS + BOOL_PATHS + DATE_PATHS))} {recase(draw, 'pr')}"
    op = recase(draw, draw(st.sampled_from(OPERATORS)))
    if kind == "bool":
        path, value = draw(st.sampled_from(BOOL_PATHS)), draw(st.sampled_from(["true", "false", "null"]))
    elif kind == "date":
        path = draw(st.sampled_from(DATE_PATHS))
        value = quoted(draw(st.sampled_from(["2000-01-01T00:00:00Z", "2999-12-31T23:59:59Z", "not a date"])))
    elif kind == "unknown":
        path, value = draw(st.sampled_from(UNKNOWN_PATHS)), quoted(draw(st.sampled_from(pool)))
    else:
        path = draw(st.sampled_from(paths or STRING_PATHS))
        base = draw(st.sampled_from(pool))
        shape = draw(st.sampled_from(["as-is", "upper", "lower", "part", "hostile", "number"]))
        if shape == "upper":
            base = base.upper()
        elif shape == "lower":
            base = base.lower()
        elif shape == "part" and len(base) > 1:
            start = draw(st.integers(min_value=0, max_value=len(base) - 1))
            base = base[start : start + draw(st.integers(min_value=1, max_value=len(base)))]
        elif shape == "hostile":
            base = draw(st.sampled_from(SPECIALS))
        value = str(draw(st.integers(-5, 5))) if shape == "number" else quoted(base)
    return f"{path} {op} {value}"


@st.composite
def scim_filter(draw: st.DrawFn, pool: list[str], depth: int = 0) -> str:
    """A filter from the RFC 7644 §3.4.2.2 grammar over the published attributes."""
    choice = draw(
        st.sampled_from(
            ["cmp", "cmp", "cmp", "valuepath", "not", "paren", "and", "or"] if depth < 3 else ["cmp"]
        )
    )
    if choice == "cmp":
        return draw(comparison(pool))
    if choice == "valuepath":
        attribute = draw(st.sampled_from(VALUE_PATHS))
        inner = draw(comparison(pool, SUB_ATTRIBUTES[attribute]))
        if draw(st.booleans()):
            inner = f"{inner} {recase(draw, draw(st.sampled_from(['and', 'or'])))} " + draw(
                comparison(pool, SUB_ATTRIBUTES[attribute])
            )
        return f"{attribute}[{inner}]"
    if choice == "not":
        return f"{recase(draw, 'not')} ({draw(scim_filter(pool, depth + 1))})"
    if choice == "paren":
        return f"({draw(scim_filter(pool, depth + 1))})"
    left, right = draw(scim_filter(pool, depth + 1)), draw(scim_filter(pool, depth + 1))
    return f"{left} {recase(draw, choice)} {right}"


@st.composite
def garbled_filter(draw: st.DrawFn, pool: list[str]) -> str:
    """A grammatical filter with random edits, or plain garbage."""
    if draw(st.booleans()):
        return draw(st.one_of(st.sampled_from(SPECIALS), st.text(max_size=60)))
    text = draw(scim_filter(pool))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        at = draw(st.integers(min_value=0, max_value=len(text)))
        insert = draw(
            st.sampled_from(['"', "(", ")", "[", "]", " and ", " or ", "not", "\\", "'", " pr", "."])
        )
        text = text[:at] + (insert if draw(st.booleans()) else "") + text[at + draw(st.integers(0, 3)) :]
    return text


# -- PATCH -----------------------------------------------------------------------------------------

PATCH_PATHS = [
    "userName",
    "displayName",
    "active",
    "emails",
    "emails.value",
    'emails[type eq "work"].value',
    'emails[type eq "home"]',
    'emails[value co "@"].primary',
    "roles",
    'roles[value eq "vpn"]',
    "roles.value",
    "name",
    "name.familyName",
    "name.nope",
    "externalId",
    "id",
    "meta",
    "meta.version",
    "schemas",
    "groups",
    "members",
    "password",
    f"{ENTERPRISE}:department",
    f"{ENTERPRISE}:manager",
    ENTERPRISE,
    f"{ZITI}:roleAttributes",
    f"{ZITI}:provisioningState",
    f"{ZITI}:identityId",
    STATUS,
    f"{STATUS}:provisioningState",
    "urn:example:nope:x",
    'emails[type eq "work"',
    "emails]",
    "a." * 40 + "b",
    "",
    " ",
    "userName[value eq 1]",
]


@st.composite
def sane_operation(draw: st.DrawFn, values: list[Any]) -> dict[str, Any]:
    """A well-formed operation on a published attribute, with a hostile value where a string goes."""
    text = draw(st.one_of(st.sampled_from(values), hostile_text))
    op, path, value = draw(
        st.sampled_from(
            [
                ("replace", "displayName", text),
                ("replace", "nickName", text),
                ("replace", "userName", text),
                ("replace", "name.familyName", text),
                ("replace", "active", draw(st.booleans())),
                ("add", "roles", [{"value": text}]),
                ("remove", f"roles[value eq {json.dumps(text)}]", None),
                ("remove", "roles", None),
                ("replace", 'emails[type eq "work"].value', text),
                ("add", "emails", [{"value": text, "type": "home"}]),
                ("replace", None, {"displayName": text, "title": text}),
                ("remove", "displayName", None),
                ("replace", f"{ENTERPRISE}:department", text),
                ("add", f"{ZITI}:roleAttributes", text),
                ("replace", "externalId", text),
            ]
        )
    )
    operation: dict[str, Any] = {"op": op}
    if path is not None:
        operation["path"] = path
    if value is not None or op != "remove":
        operation["value"] = value
    return operation


@st.composite
def patch_operation(draw: st.DrawFn, values: list[Any]) -> dict[str, Any]:
    if draw(st.integers(0, 2)):
        return draw(sane_operation(values))
    operation: dict[str, Any] = {
        "op": draw(
            st.sampled_from(["add", "replace", "remove", "Add", "REPLACE", "Remove", "delete", "move", ""])
        )
    }
    if draw(st.integers(0, 5)):
        operation["path"] = draw(
            st.one_of(st.sampled_from(PATCH_PATHS), any_char_text, st.sampled_from(SPECIALS))
        )
    if draw(st.integers(0, 4)):
        operation["value"] = draw(st.one_of(st.sampled_from(values), json_values(8)))
    if not draw(st.integers(0, 9)):
        operation[draw(st.sampled_from(["Path", "VALUE", "from", "x"]))] = draw(json_values(3))
    return operation


@st.composite
def patch_body(draw: st.DrawFn, values: list[Any]) -> Any:
    operations = draw(st.lists(patch_operation(values), min_size=0, max_size=4))
    shape = draw(st.sampled_from(["ok"] * 8 + ["no-schema", "ops-not-list", "lowercase-key"]))
    if shape == "no-schema":
        return {"Operations": operations}
    if shape == "ops-not-list":
        return {"schemas": [PATCH], "Operations": draw(json_values(4))}
    if shape == "lowercase-key":
        return {"schemas": [PATCH], "operations": operations}
    return {"schemas": [PATCH], "Operations": operations}


# -- URL paths -------------------------------------------------------------------------------------

PATH_CHARS = st.characters(codec="utf-8", exclude_categories=["Cs"])
"""Any encodable character, control characters, newlines and spaces included (percent-encoded)."""


@st.composite
def url_path(draw: st.DrawFn, ids: list[str]) -> str:
    endpoint = draw(
        st.sampled_from(
            [
                "Users",
                "Groups",
                "Schemas",
                "ResourceTypes",
                "ServiceProviderConfig",
                "Bulk",
                "Me",
                ".search",
                "Users/.search",
                "users",
                "USERS",
                "",
                "x",
            ]
        )
    )
    segments = [endpoint]
    for _ in range(draw(st.integers(0, 3))):
        segments.append(
            draw(
                st.one_of(
                    st.sampled_from([*ids, "..", ".", *PRE_ENCODED, "*", ""]),
                    st.text(PATH_CHARS, max_size=30),
                )
            )
        )
    path = "/" + "/".join(
        segment if segment in PRE_ENCODED else quote(segment, safe=".*") for segment in segments
    )
    return path


PRE_ENCODED = ("%2e%2e", "%2F")


INT64_MAX = 2**63 - 1


query_params = st.dictionaries(
    st.sampled_from(
        [
            "filter",
            "attributes",
            "excludedAttributes",
            "count",
            "startIndex",
            "sortBy",
            "sortOrder",
            "x",
            "FILTER",
        ]
    ),
    st.one_of(
        st.sampled_from(
            [
                "-1",
                "0",
                "1",
                "99999999999999999999",
                str(INT64_MAX),
                "abc",
                "1.5",
                "userName",
                "[",
                "",
                'userName eq "x"',
                "descending",
            ]
        ),
        st.text(PATH_CHARS, max_size=30),
    ),
    max_size=3,
)


# -- tokens ----------------------------------------------------------------------------------------


@st.composite
def forged_authorization(draw: st.DrawFn, token: str) -> str:
    """An Authorization header derived from a valid token that must not authenticate."""
    kind = draw(
        st.sampled_from(
            [
                "truncate",
                "pad",
                "case",
                "flip",
                "basic",
                "scheme",
                "empty",
                "unicode",
                "random",
                "jwt",
                "doubled",
                "inner-space",
            ]
        )
    )
    if kind == "truncate":
        return "Bearer " + token[: draw(st.integers(0, len(token) - 1))]
    if kind == "pad":
        return (
            "Bearer "
            + draw(st.sampled_from(["", "x", "0"]))
            + token
            + draw(st.text(string.ascii_letters, min_size=1, max_size=5))
        )
    if kind == "case":
        changed = draw(st.sampled_from([token.upper(), token.swapcase(), token.capitalize()]))
        return "Bearer " + (changed if changed != token else token.upper() + "X")
    if kind == "flip":
        at = draw(st.integers(0, len(token) - 1))
        replacement = draw(st.sampled_from([c for c in "aZ9-_" if c != token[at]]))
        return "Bearer " + token[:at] + replacement + token[at + 1 :]
    if kind == "basic":
        return (
            "Basic "
            + base64.b64encode(f"{draw(st.sampled_from(['admin', 'scim', '']))}:{token}".encode()).decode()
        )
    if kind == "scheme":
        return draw(st.sampled_from(["Token ", "Bearer:", "Bearer=", "MAC ", "Negotiate ", ""])) + token
    if kind == "empty":
        return draw(st.sampled_from(["", "Bearer", "Bearer ", "Bearer  ", "Basic"]))
    if kind == "unicode":
        return "Bearer " + draw(
            st.sampled_from(
                [
                    "\u0442\u043e\u043a\u0435\u043d",
                    token + "\u00e9",
                    "\u200b" + token,
                    token.replace("o", "\u043e"),
                    "\U0001f511",
                ]
            )
        )
    if kind == "jwt":
        return "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."
    if kind == "doubled":
        return f"Bearer {token} {token}"
    if kind == "inner-space":
        return f"Bearer {token[:5]} {token[5:]}"
    return "Bearer " + draw(st.text(string.printable.strip(), min_size=1, max_size=60))


# -- invariants -------------------------------------------------------------------------------------


def check_answer(response: httpx.Response, allowed: set[int] | None = None) -> None:
    """Never a 500, never a traceback, every error a SCIM Error with the same status."""
    allowed = SCIM_ERRORS if allowed is None else allowed
    status = response.status_code
    text = response.text
    assert status < 500 or status in allowed, f"{status}: {text[:500]}"
    assert "Traceback" not in text and 'File "/' not in text, text[:1000]
    if status >= 400 and not response.request.url.path.startswith("/scim/v2/"):
        return  # dot segments took the request out of the SCIM endpoint (the client normalises them)
    if status >= 400:
        assert status in allowed, f"unexpected status {status}: {text[:300]}"
        if response.request.method == "HEAD":
            assert not text
            return
        body = response.json()
        assert ERROR in body.get("schemas", []), body
        assert str(body.get("status")) == str(status), body


def stable(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource without what the background reconciler changes on its own."""
    document: dict[str, Any] = json.loads(json.dumps(resource))
    document.pop(STATUS, None)
    if isinstance(document.get("schemas"), list):
        document["schemas"] = [urn for urn in document["schemas"] if urn != STATUS]
    return document
