"""Request-body validation against the controller's real OpenAPI (Swagger 2.0) spec.

Implements ``docs/controller-api.md`` §10 and the loading fixes of
``shared/ziti-edge-api/SOURCE.txt``:

1. ``!!float`` lengths (``minLength/maxLength/minItems/maxItems``) are coerced to int;
2. ``items: null`` (``definitions.controllerSettingsList.items``) becomes ``{}``;
3. ``x-nullable: true`` makes the schema accept ``null``;
4. ``definitions.subTags.additionalProperties`` (used by ``tags``/``appData``) is relaxed to "any".

Requests are validated strictly (types, required, enums, lengths, ranges) but additional properties stay
allowed, as the controller's go-swagger models ignore them. Problems are reported the way the controller
reports them (§1, go-openapi messages): a JSON type mismatch is a Go unmarshal error
(``COULD_NOT_PARSE_BODY``), anything else a go-openapi validation error (``COULD_NOT_VALIDATE`` with
``cause.field``/``reason``/``value``), e.g. ``type in body is required``.

Loading is cached per file (the management spec is 1.2 MB of YAML) and uses ``yaml.CSafeLoader`` if present.

jsonschema and PyYAML are the optional ``emulator`` extra (``pip install 'ziti-scim[emulator]'``): they are
imported only when a spec is loaded, so the emulator itself (and ``ziti-scim demo``, which validates
nothing) runs without them; :func:`load_spec` without them raises :class:`SpecValidationUnavailable`.
"""

from __future__ import annotations

import copy
import functools
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import go_value

if TYPE_CHECKING:
    import jsonschema

__all__ = [
    "BodyProblem",
    "LoadedSpec",
    "SpecValidationUnavailable",
    "check_request_body",
    "load_spec",
    "validate_request_body",
]

EXTRA_HINT = "pip install 'ziti-scim[emulator]'"


class SpecValidationUnavailable(RuntimeError):
    """A spec was asked for, but jsonschema or PyYAML (the ``emulator`` extra) is not installed."""


def validation_available() -> bool:
    """Whether jsonschema and PyYAML can be imported, i.e. whether :func:`load_spec` can work."""
    try:
        import jsonschema  # noqa: F401
        import yaml  # noqa: F401
    except ImportError:
        return False
    return True


_LENGTH_KEYS = ("minLength", "maxLength", "minItems", "maxItems")
_BASE_PATHS = ("/edge/management/v1", "/edge/client/v1")


@dataclass(frozen=True)
class BodyProblem:
    """One problem with a request body.

    ``kind`` is ``parse`` (the controller answers 400 COULD_NOT_PARSE_BODY) or ``validate``
    (400 COULD_NOT_VALIDATE with a field cause).
    """

    kind: str
    field: str
    reason: str
    value: str

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True)
class BodyOperation:
    method: str
    template: str
    param_name: str
    required: bool
    schema: dict[str, Any]
    model_name: str


@dataclass
class LoadedSpec:
    """A fixed-up Swagger document plus an index of the operations that take a JSON body."""

    path: Path
    document: dict[str, Any]
    base_path: str
    operations: list[tuple[re.Pattern[str], BodyOperation]]
    _validators: dict[tuple[str, str], jsonschema.protocols.Validator] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def definitions(self) -> dict[str, Any]:
        defs: dict[str, Any] = self.document.get("definitions", {})
        return defs

    def find_operation(self, method: str, path: str) -> BodyOperation | None:
        """The body operation for ``method`` and a concrete path or a path template (base path optional)."""
        rel = path.split("?", 1)[0]
        for base in (self.base_path, *_BASE_PATHS):
            if base and rel.startswith(base + "/"):
                rel = rel[len(base) :]
                break
        for pattern, op in self.operations:
            if op.method == method.lower() and pattern.fullmatch(rel):
                return op
        return None

    def validator(self, op: BodyOperation) -> jsonschema.protocols.Validator:
        key = (op.method, op.template)
        with self._lock:
            found = self._validators.get(key)
            if found is None:
                root = dict(op.schema)
                root["definitions"] = self.definitions
                import jsonschema

                found = jsonschema.Draft4Validator(root)
                self._validators[key] = found
            return found


# ---- loading and fixing ----------------------------------------------------------------------------


def _fix(node: Any) -> Any:
    """Apply the SOURCE.txt fixes recursively (returns a new structure)."""
    if isinstance(node, list):
        return [_fix(v) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _LENGTH_KEYS and isinstance(value, float):
            out[key] = int(value)
        elif key == "items" and value is None:
            out[key] = {}
        else:
            out[key] = _fix(value)
    if out.get("x-nullable") is True:
        out = _nullable(out)
    return out


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    typ = schema.get("type")
    if isinstance(typ, str) and "$ref" not in schema:
        fixed = dict(schema)
        fixed["type"] = [typ, "null"]
        if isinstance(fixed.get("enum"), list) and None not in fixed["enum"]:
            fixed["enum"] = [*fixed["enum"], None]
        return fixed
    inner = {k: v for k, v in schema.items() if k != "x-nullable"}
    return {"anyOf": [inner, {"type": "null"}], "x-nullable": True}


def _load_yaml(path: Path) -> dict[str, Any]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with path.open("rb") as fh:
        data = yaml.load(fh, Loader=loader)  # noqa: S506 - a safe loader is used
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a Swagger document")
    return data


def _template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)
    regex = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(regex)


def _index_operations(document: dict[str, Any]) -> list[tuple[re.Pattern[str], BodyOperation]]:
    found: list[tuple[int, re.Pattern[str], BodyOperation]] = []
    for template, item in (document.get("paths") or {}).items():
        for method, op in item.items():
            if method == "parameters" or not isinstance(op, dict):
                continue
            for param in op.get("parameters", []):
                if isinstance(param, dict) and param.get("in") == "body":
                    schema = param.get("schema") or {}
                    ref = schema.get("$ref", "")
                    model = ref.rsplit("/", 1)[-1] if ref else param.get("name", "body")
                    body_op = BodyOperation(
                        method=method.lower(),
                        template=template,
                        param_name=str(param.get("name", "body")),
                        required=bool(param.get("required", False)),
                        schema=schema,
                        model_name=model[:1].upper() + model[1:],
                    )
                    found.append((template.count("{"), _template_regex(template), body_op))
    # literal segments win over parameters (e.g. /identities/{id}/disable over /x/{a}/{b})
    found.sort(key=lambda t: t[0])
    return [(pattern, op) for _, pattern, op in found]


@functools.lru_cache(maxsize=8)
def _load_cached(resolved: str) -> LoadedSpec:
    path = Path(resolved)
    document = _fix(_load_yaml(path))
    defs = document.get("definitions", {})
    sub_tags = defs.get("subTags")
    if isinstance(sub_tags, dict):
        sub_tags["additionalProperties"] = {}
    return LoadedSpec(
        path=path,
        document=document,
        base_path=str(document.get("basePath", "")),
        operations=_index_operations(document),
    )


def load_spec(path: str | Path) -> LoadedSpec:
    """Load and fix a bundled edge-api spec (``management.yml`` or ``client.yml``); cached per process.

    Raises :class:`SpecValidationUnavailable` when the ``emulator`` extra is not installed.
    """
    if not validation_available():
        raise SpecValidationUnavailable(
            f"validating request bodies against {path} needs jsonschema and PyYAML: {EXTRA_HINT}"
        )
    return _load_cached(str(Path(path).resolve()))


# ---- validation ------------------------------------------------------------------------------------

_GO_TYPES = {
    "string": "string",
    "boolean": "bool",
    "integer": "int64",
    "number": "float64",
    "object": "struct",
}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _leaf_errors(error: jsonschema.ValidationError) -> Iterator[jsonschema.ValidationError]:
    """Descend into anyOf (nullable wrappers) to the errors of the non-null branch."""
    if error.validator in ("anyOf", "oneOf") and error.context:
        branch0 = [e for e in error.context if e.relative_schema_path and e.relative_schema_path[0] == 0]
        for sub in branch0 or error.context:
            yield from _leaf_errors(sub)
        return
    yield error


def _expected_type(schema_type: Any) -> str:
    types = schema_type if isinstance(schema_type, list) else [schema_type]
    first = next((t for t in types if t != "null"), "object")
    if first == "array":
        return "[]interface {}"
    return _GO_TYPES.get(str(first), str(first))


def _problems(error: jsonschema.ValidationError, op: BodyOperation) -> list[BodyProblem]:
    names = [str(p) for p in error.absolute_path]
    if error.validator == "required":
        present = error.instance if isinstance(error.instance, dict) else {}
        required: list[Any] = list(error.validator_value or [])  # type: ignore[arg-type]
        missing = [str(r) for r in required if r not in present]
        full = [".".join([*names, m]) for m in missing]
        return [BodyProblem("validate", f, f"{f} in body is required", "<nil>") for f in full]
    return [_problem(error, op, names)]


def _problem(error: jsonschema.ValidationError, op: BodyOperation, names: list[str]) -> BodyProblem:
    name = ".".join(names)
    instance = error.instance
    kind = str(error.validator)
    if kind == "type":
        if instance is None:
            expected = _expected_type(error.validator_value)
            reason = f'{name} in body must be of type {expected}: "null"'
            return BodyProblem("validate", name, reason, "<nil>")
        go_field = ".".join(n for n in names if not n.isdigit())
        if go_field:
            target = (
                f"Go struct field {op.model_name}.{go_field} of type {_expected_type(error.validator_value)}"
            )
        else:
            target = f"Go value of type rest_model.{op.model_name}"
        reason = (
            f'parsing {op.param_name} body from "" failed, because json: cannot unmarshal '
            f"{_json_type(instance)} into {target}"
        )
        return BodyProblem("parse", name, reason, go_value(instance))
    if kind == "enum":
        choices: list[Any] = list(error.validator_value or [])  # type: ignore[arg-type]
        allowed = [v for v in choices if v is not None]
        reason = f"{name} in body should be one of {go_value(allowed)}"
    elif kind == "minLength":
        reason = f"{name} in body should be at least {error.validator_value} chars long"
    elif kind == "maxLength":
        reason = f"{name} in body should be at most {error.validator_value} chars long"
    elif kind == "minimum":
        reason = f"{name} in body should be greater than or equal to {go_value(error.validator_value)}"
    elif kind == "maximum":
        reason = f"{name} in body should be less than or equal to {go_value(error.validator_value)}"
    elif kind == "minItems":
        reason = f"{name} in body should have at least {error.validator_value} items"
    elif kind == "maxItems":
        reason = f"{name} in body should have at most {error.validator_value} items"
    else:
        reason = f"{name or op.param_name} in body: {error.message}"
    return BodyProblem("validate", name, reason, go_value(instance))


def check_request_body(
    spec: LoadedSpec, method: str, path: str, body: Any, *, present: bool = True
) -> list[BodyProblem]:
    """Structured problems of ``body`` for the operation; ``present=False`` means no body was sent.

    Parse problems come first (the controller stops at the JSON decode), then validation problems sorted by
    field path (go-swagger validates properties in name order and reports the first).
    """
    op = spec.find_operation(method, path)
    if op is None:
        return []
    if not present:
        if op.required:
            return [BodyProblem("validate", op.param_name, f"{op.param_name} in body is required", "")]
        return []
    problems: list[BodyProblem] = []
    for err in spec.validator(op).iter_errors(body):
        for leaf in _leaf_errors(err):
            problems.extend(p for p in _problems(leaf, op) if p not in problems)
    problems.sort(key=lambda p: (p.kind != "parse", p.field))
    return problems


def validate_request_body(
    spec: LoadedSpec | str | Path, method: str, path_template_or_path: str, body: Any
) -> list[str]:
    """Violations of ``body`` against the spec's body schema for the operation (empty list: valid).

    ``path_template_or_path`` may be a template (``/identities/{id}``) or a concrete path, with or without the
    ``/edge/management/v1`` base path. Operations without a body schema yield ``[]``.
    """
    loaded = spec if isinstance(spec, LoadedSpec) else load_spec(spec)
    return [p.reason for p in check_request_body(loaded, method, path_template_or_path, body)]


def copy_schema(spec: LoadedSpec, name: str) -> dict[str, Any]:
    """A deep copy of one fixed-up definition (handy for tests and tooling)."""
    return copy.deepcopy(spec.definitions[name])
