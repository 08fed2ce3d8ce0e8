"""Load spec files: parse TOML, resolve `extends`, validate into a `Spec`.

Every failure becomes a `SpecError` naming the file, line and dotted field.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from tunelab.experiments.errors import SpecError
from tunelab.experiments.merge import deep_merge
from tunelab.experiments.schema import Spec
from tunelab.experiments.search import SearchSection, objective_problem
from tunelab.experiments.suggest import suggestion_for_extra
from tunelab.experiments.sweep import SweepDefinitionError, apply_point, check_definition, expand
from tunelab.experiments.toml_lines import field_lines, line_of

_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")


@dataclass
class LoadedSpec:
    """A validated spec with what produced it: the file, its text and the files it extends."""

    path: Path
    text: str
    spec: Spec
    raw: dict[str, Any]
    parents: list[Path] = field(default_factory=list)
    # Set for specs expanded from a [sweep]: the whole sweep table and this point of it.
    sweep: dict[str, list[Any]] | None = None
    sweep_point: dict[str, Any] | None = None
    # Set for a spec with a [search]: the search; `spec` and `raw` are then what every trial starts from.
    search: SearchSection | None = None


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
        raise _located(exc, path=path, text=text) from None


def _located(exc: ValidationError, *, path: Path, text: str, table: str | None = None,
             model: type = Spec) -> SpecError:
    """The first error of `exc` as a SpecError at its line; `table` names the table `model` validated on its own."""
    error = exc.errors()[0]
    # A table key that failed its own check is located at the key ("[key]" is pydantic's marker for it).
    loc = tuple(part for part in error["loc"] if part != "[key]")
    full = (table, *loc) if table else loc
    dotted = ".".join(str(part) for part in full)
    lines = field_lines(text)
    if error["type"] == "extra_forbidden":
        message = f"unknown key{suggestion_for_extra(loc, model)}"
    elif error["type"] == "missing":
        message = "required field is missing"
    else:
        message = error["msg"]
        if "input" in error and not isinstance(error["input"], dict):
            message += f" (got {error['input']!r})"
        message = message.removeprefix("Value error, ")
    return SpecError(path, message, line=line_of(lines, full), field=dotted or None)


def _load_search(search: Any, merged: dict[str, Any], *, path: Path, text: str) -> tuple[Spec, SearchSection]:
    """The spec every trial starts from and its validated [search]; every value a trial may take is checked
    against the spec now, so a search never queues a trial that cannot be valid."""
    lines = field_lines(text)
    if not isinstance(search, dict):
        raise SpecError(path, "[search] must be a table", line=line_of(lines, ("search",)), field="search")
    spec = validate(merged, path=path, text=text)
    try:
        definition = SearchSection.model_validate(search)
    except ValidationError as exc:
        raise _located(exc, path=path, text=text, table="search", model=SearchSection) from None
    problem = objective_problem(definition, spec)
    if problem is not None:
        field, message = problem
        raise SpecError(path, message, line=line_of(lines, ("search", field)), field=f"search.{field}")
    for key, distribution in definition.params.items():
        for value in distribution.extremes():
            try:
                Spec.model_validate(apply_point(merged, {key: value}))
            except ValidationError as exc:
                error = _located(exc, path=path, text=text)
                error.line = line_of(lines, ("search", "params", key))
                error.message += f" (from [search] value {value!r} of {key})"
                raise error from None
    return spec, definition


def load_specs(path: Path | str) -> list[LoadedSpec]:
    """Parse, resolve `extends`, expand `[sweep]` and validate: one LoadedSpec per experiment."""
    path = Path(path)
    text, raw = parse_toml(path)
    merged, parents = _resolve_extends(path, raw, (path.resolve(),))
    sweep = merged.pop("sweep", None)
    search = merged.pop("search", None)
    if search is not None:
        if sweep is not None:
            raise SpecError(path, "a spec has a [sweep] or a [search], not both (grid search: sampler = \"grid\")",
                            line=line_of(field_lines(text), ("search",)), field="search")
        spec, definition = _load_search(search, merged, path=path, text=text)
        return [LoadedSpec(path=path, text=text, spec=spec, raw=merged, parents=parents, search=definition)]
    if sweep is None:
        spec = validate(merged, path=path, text=text)
        return [LoadedSpec(path=path, text=text, spec=spec, raw=merged, parents=parents)]
    lines = field_lines(text)
    try:
        sweep = check_definition(sweep)
    except SweepDefinitionError as exc:
        loc = ("sweep", exc.key) if exc.key else ("sweep",)
        raise SpecError(path, str(exc), line=line_of(lines, loc), field=".".join(loc)) from None
    validate(merged, path=path, text=text)  # the spec itself must be valid before any point
    loaded = []
    for point, applied in expand(merged, sweep):
        try:
            spec = Spec.model_validate(applied)
        except ValidationError:
            # Re-validate to get the standard message, then point it at the sweep key responsible.
            try:
                validate(applied, path=path, text=text)
            except SpecError as error:
                key = next((k for k in point if error.field and (error.field == k or error.field.startswith(k + ".")
                                                                  or k.startswith(error.field + "."))), None)
                if key is not None:
                    error.line = line_of(lines, ("sweep", key))
                    error.message += f" (from [sweep] value {point[key]!r})"
                raise error from None
            raise
        loaded.append(LoadedSpec(path=path, text=text, spec=spec, raw=applied, parents=parents,
                                 sweep=sweep, sweep_point=point))
    return loaded


def load_all(paths: Iterable[Path | str]) -> list[LoadedSpec]:
    """Every experiment of every file (each sweep point), all validated before the caller stores any:
    one bad file, nothing written."""
    return [loaded for path in paths for loaded in load_specs(path)]


def load_spec(path: Path | str) -> LoadedSpec:
    """Load a spec file that defines exactly one experiment (no [sweep], no [search])."""
    loaded = load_specs(path)
    if len(loaded) != 1:
        raise SpecError(path, f"defines a sweep of {len(loaded)} experiments; submit it instead", field="sweep")
    if loaded[0].search is not None:
        raise SpecError(path, "defines a search; submit it instead", field="search")
    return loaded[0]
