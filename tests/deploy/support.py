"""Readers for the deployment files: a Dockerfile parser, a model of ``.dockerignore`` matching, and a
scanner for secrets written in clear."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.paths import ROOT

DEPLOY = ROOT / "deploy"


@dataclass(frozen=True)
class Instruction:
    name: str
    args: str

    def exec_form(self) -> list[str]:
        """The JSON (exec) form of CMD/ENTRYPOINT, or the shell form split on spaces."""
        text = self.args.strip()
        if text.startswith("["):
            value = json.loads(text)
            assert isinstance(value, list)
            return [str(v) for v in value]
        return text.split()


def dockerfile(path: Path = ROOT / "Dockerfile") -> list[Instruction]:
    """Instructions with line continuations joined and comments dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        name, _, args = line.partition(" ")
        instructions.append(Instruction(name.upper(), args.strip()))
    return instructions


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule (moby patternmatcher): the last pattern matching the path or one of its parent
    directories decides; ``!`` re-includes. ``**`` matches any number of directories."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        regex = _glob(body.strip("/"))
        if any(regex.fullmatch(candidate) for candidate in candidates):
            excluded = not negate
    return excluded


def _glob(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def dockerignore_patterns(path: Path = ROOT / ".dockerignore") -> list[str]:
    lines = [line.strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


# ---------------------------------------------------------------- secrets in clear

SECRET_KEY = re.compile(
    r"(pass(word)?|pwd|secret|token|api[_-]?key|credential|private[_-]?key)", re.IGNORECASE
)
_ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
_PLACEHOLDER = re.compile(r"^<[^>]*>$")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.")
_URL_PASSWORD = re.compile(r"://[^/\s:@]+:([^@\s/]+)@")
_RANDOM = re.compile(r"[A-Za-z0-9+/_=-]{24,}")


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def is_reference(value: str) -> bool:
    """A value that names where a secret lives instead of holding it."""
    value = value.strip()
    return (
        not value
        or value.startswith(("/run/secrets/", "/", "./", "deploy/", "${"))
        or bool(_ENV_NAME.match(value))
        or bool(_PLACEHOLDER.match(value))
        or value.lower() in ("true", "false", "yes", "no", "null", "~")
    )


def scan_mapping(node: Any, where: str = "") -> Iterator[str]:
    """Findings for secret-named keys holding literal values, anywhere in parsed YAML/TOML."""
    if isinstance(node, dict):
        # Kubernetes env entries: {"name": "X_PASSWORD", "value": "..."}
        name, literal = node.get("name"), node.get("value")
        if isinstance(name, str) and SECRET_KEY.search(name) and isinstance(literal, str):
            if not is_reference(literal):
                yield f"{where}: {name} = {literal!r}"
        for key, value in node.items():
            path = f"{where}.{key}" if where else str(key)
            named_secret = SECRET_KEY.search(str(key)) and not str(key).endswith(("_env", "_file", "_FILE"))
            literal_value = isinstance(value, str | int | float) and not isinstance(value, bool)
            if named_secret and literal_value and not is_reference(str(value)):
                yield f"{path} = {value!r}"
            yield from scan_mapping(value, path)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            path = f"{where}[{index}]"
            if isinstance(item, str) and "=" in item:
                key, _, value = item.partition("=")
                if SECRET_KEY.search(key) and not is_reference(value):
                    yield f"{path}: {item!r}"
            yield from scan_mapping(item, path)


def scan_text(text: str, name: str) -> Iterator[str]:
    """Line-level findings: env-file assignments, JWTs, URL passwords, high-entropy strings."""
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("#"):
            continue
        match = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*[=:]\s*(.*)$", stripped)
        if match and SECRET_KEY.search(match.group(1)) and not is_reference(match.group(2).strip("\"'")):
            if not match.group(1).endswith(("_env", "_file", "_FILE")):
                yield f"{name}:{number}: {stripped}"
        if _JWT.search(line):
            yield f"{name}:{number}: a JWT"
        password = _URL_PASSWORD.search(line)
        if password and not _PLACEHOLDER.match(password.group(1)):
            yield f"{name}:{number}: a password in a URL"
        for candidate in _RANDOM.findall(line):
            if any(c.isdigit() for c in candidate) and _entropy(candidate) > 4.2:
                yield f"{name}:{number}: high-entropy string {candidate[:6]}…"


def deployment_files() -> list[Path]:
    files = [ROOT / "docker-compose.yml", ROOT / "Dockerfile", ROOT / ".dockerignore"]
    files += sorted(p for p in DEPLOY.rglob("*") if p.is_file())
    return files
