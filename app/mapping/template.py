"""Name templates: literal text with SCIM attribute paths in braces.

``"{name.givenName} {name.familyName}"``, ``"{emails[primary eq true].value}"``. ``{{`` and ``}}`` are
literal braces. A placeholder with no value renders as ``""``; a multi-valued one renders its first
value. The result has runs of whitespace collapsed to one space and is stripped, so authentik's
single-word names (``familyName: " "``) give ``"Bob"``, not ``"Bob  "``. An empty result is a
`MappingError` naming the template's attributes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from app.mapping.errors import MappingError, PathSyntaxError
from app.mapping.scim_path import ScimPath, evaluate, parse_path, scalar_text

_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Template:
    text: str
    parts: tuple[str | ScimPath, ...]

    @property
    def paths(self) -> tuple[ScimPath, ...]:
        return tuple(p for p in self.parts if isinstance(p, ScimPath))

    def render(self, resource: Mapping[str, object], *, primary_fallback: bool = True) -> str:
        """Render, raising `MappingError` when nothing but whitespace is left."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            found = evaluate(part, resource, primary_fallback=primary_fallback).values
            texts = (scalar_text(v) for v in found)
            out.append(next((t for t in texts if t is not None and t.strip()), ""))
        result = _SPACES.sub(" ", "".join(out)).strip()
        if not result:
            attribute = ", ".join(p.text for p in self.paths) or "name_template"
            raise MappingError(attribute, f"name template {self.text!r} produced an empty identity name")
        return result


def parse_template(text: str) -> Template:
    """Split ``text`` into literals and parsed paths; raises `PathSyntaxError`."""
    parts: list[str | ScimPath] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if text.startswith("{{", i) or text.startswith("}}", i):
            literal.append(ch)
            i += 2
        elif ch == "{":
            end = text.find("}", i + 1)
            if end < 0:
                raise PathSyntaxError(text, i, "unclosed '{'")
            if literal:
                parts.append("".join(literal))
                literal = []
            try:
                parts.append(parse_path(text[i + 1 : end]))
            except PathSyntaxError as exc:
                position = None if exc.position is None else i + 1 + exc.position
                raise PathSyntaxError(text, position, exc.detail) from exc
            i = end + 1
        elif ch == "}":
            raise PathSyntaxError(text, i, "unmatched '}' (write '}}' for a literal brace)")
        else:
            literal.append(ch)
            i += 1
    if literal:
        parts.append("".join(literal))
    return Template(text, tuple(parts))
