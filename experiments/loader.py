"""Load spec files: parse TOML, resolve `extends`, validate into a `Spec`.

Every failure becomes a `SpecError` naming the file, line and dotted field.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from experiments.errors import SpecError
from experiments.merge import deep_merge
from experiments.schema import Spec
from experiments.suggest import suggestion_for_extra
from experiments.toml_lines import field_lines, line_of

_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")


@dataclass
class LoadedSpec:
    """A validated spec with what produced it: the file, its text and the files it extends."""

    path: Path
    text: str
    spec: Spec
    raw: dict[str, Any]
    parents: list[Path] = field(default_factory=list)


def parse_toml(path: Path) -> tuple[str, dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(path, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(path, f"cannot read: {exc}") from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _TOML_POSITION.search(message)
        line = int(match.group(1)) if match else None
        column = int(match.group(2)) if match else None
        message = _TOML_POSITION.sub("", message).strip()
        raise SpecError(path, f"invalid TOML: {message}", line=line, column=column) from None


def _resolve_extends(path: Path, raw: dict[str, Any], chain: tuple[Path, ...]) -> tuple[dict[str, Any], list[Path]]:
    """Merge the parents named by `experiment.extends` under `raw` (the child wins)."""
    extends = raw.get("experiment", {}).get("extends")
    if extends is None:
        return raw, []
    names = [extends] if isinstance(extends, str) else extends
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        lines = field_lines(path.read_text(encoding="utf-8"))
        raise SpecError(path, "must be a file name or a list of file names",
                        line=line_of(lines, ("experiment", "extends")), field="experiment.extends")
    merged: dict[str, Any] = {}
    parents: list[Path] = []
    for name in names:
        parent = (path.parent / name).resolve()
        if parent in chain:
            cycle = " -> ".join(str(p) for p in (*chain, parent))
            raise SpecError(path, f"extends cycle: {cycle}", field="experiment.extends")
        if not parent.exists():
            lines = field_lines(path.read_text(encoding="utf-8"))
            raise SpecError(path, f"extended file not found: {parent}",
                            line=line_of(lines, ("experiment", "extends")), field="experiment.extends")
        _, parent_raw = parse_toml(parent)
        parent_raw, grand = _resolve_extends(parent, parent_raw, (*chain, parent))
        merged = deep_merge(merged, parent_raw)
        parents.extend([*grand, parent])
    child = {k: v for k, v in raw.items()}
    child["experiment"] = {k: v for k, v in raw.get("experiment", {}).items() if k != "extends"}
    merged.setdefault("experiment", {}).pop("extends", None)
    return deep_merge(merged, child), parents


def validate(raw: dict[str, Any], *, path: Path, text: str) -> Spec:
    """Validate a merged raw dict; errors point at the line of `path` that set the field."""
    try:
        return Spec.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = tuple(error["loc"])
        dotted = ".".join(str(part) for part in loc)
        lines = field_lines(text)
        if error["type"] == "extra_forbidden":
            message = f"unknown key{suggestion_for_extra(loc)}"
        elif error["type"] == "missing":
            message = "required field is missing"
        else:
            message = error["msg"]
            if "input" in error and not isinstance(error["input"], dict):
                message += f" (got {error['input']!r})"
            message = message.removeprefix("Value error, ")
        raise SpecError(path, message, line=line_of(lines, loc), field=dotted or None) from None


def load_spec(path: Path | str) -> LoadedSpec:
    """Parse, resolve `extends` and validate one spec file."""
    path = Path(path)
    text, raw = parse_toml(path)
    merged, parents = _resolve_extends(path, raw, (path.resolve(),))
    spec = validate(merged, path=path, text=text)
    return LoadedSpec(path=path, text=text, spec=spec, raw=merged, parents=parents)
