"""Load spec files: parse TOML, resolve `extends`, validate into a `Spec`.

Every failure becomes a `SpecError` naming the file, line and dotted field.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from tunelab.experiments.errors import SpecError
from tunelab.experiments.files import Loc, check_spec_files, named_paths
from tunelab.experiments.merge import deep_merge
from tunelab.experiments.paths import file_kind
from tunelab.experiments.schema import Spec
from tunelab.experiments.search import SearchSection, objective_problem
from tunelab.experiments.suggest import suggestion_for_extra
from tunelab.experiments.sweep import SweepDefinitionError, apply_point, check_definition, expand
from tunelab.experiments.toml_lines import field_lines, line_of

_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")
# Bounds on what a spec may make tunelab read: a spec is a short text file, and `extends` a short chain.
MAX_SPEC_BYTES = 1_000_000
MAX_EXTENDS_DEPTH = 16  # files in one chain of `extends`, the spec itself included
MAX_EXTENDED_FILES = 64  # files read for one spec through `extends`, however they branch


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

    def locate(self, loc: Loc) -> tuple[Path, int | None]:
        """The file and line that set the field at `loc`: this file, a [sweep] key of it, or a file it extends."""
        if self.sweep_point:
            dotted = ".".join(str(part) for part in loc)
            key = next((k for k in self.sweep_point if dotted == k or dotted.startswith(k + ".")), None)
            if key is not None:
                return self.path, line_of(field_lines(self.text), ("sweep", key))
        # Parents are listed farthest first, and a later one overrides an earlier one.
        for path in (self.path, *reversed(self.parents)):
            try:
                lines = field_lines(self.text if path == self.path else read_spec_text(path))
            except SpecError:
                continue
            if tuple(loc) in lines:
                return path, lines[tuple(loc)]
        return self.path, line_of(field_lines(self.text), tuple(loc))


def read_spec_text(path: Path) -> str:
    """The text of a spec file: a regular file of at most MAX_SPEC_BYTES bytes of UTF-8 (a BOM is allowed)."""
    try:
        # O_NONBLOCK: a FIFO opens at once (and is then refused) instead of waiting for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise SpecError(path, "file not found") from None
    except OSError as exc:
        raise SpecError(path, f"cannot read: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise SpecError(path, f"is {file_kind(mode)}, not a spec file")
        chunks, size = [], 0
        while size <= MAX_SPEC_BYTES and (chunk := os.read(fd, 1 << 16)):
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise SpecError(path, f"cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if size > MAX_SPEC_BYTES:
        raise SpecError(path, f"larger than {MAX_SPEC_BYTES:,} bytes: a spec is a short text file")
    data = b"".join(chunks)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise SpecError(path, f"not UTF-8 text (byte 0x{data[exc.start]:02x})", line=line) from None


def parse_toml(path: Path) -> tuple[str, dict[str, Any]]:
    text = read_spec_text(path)
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _TOML_POSITION.search(message)
        line = int(match.group(1)) if match else None
        column = int(match.group(2)) if match else None
        message = _TOML_POSITION.sub("", message).strip()
        raise SpecError(path, f"invalid TOML: {message}", line=line, column=column) from None


def _resolve_extends(path: Path, text: str, raw: dict[str, Any], chain: tuple[Path, ...],
                     read: list[Path]) -> tuple[dict[str, Any], list[Path]]:
    """Merge the parents named by `experiment.extends` under `raw` (the child wins); `read` collects every
    file read on the way, to bound it."""
    experiment = raw.get("experiment", {})
    extends = experiment.get("extends") if isinstance(experiment, dict) else None
    if extends is None:
        return raw, []

    def refuse(message: str) -> SpecError:
        return SpecError(path, message, line=line_of(field_lines(text), ("experiment", "extends")),
                         field="experiment.extends")

    names = [extends] if isinstance(extends, str) else extends
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise refuse("must be a file name or a list of file names")
    if len(chain) >= MAX_EXTENDS_DEPTH:
        raise refuse(f"extends goes deeper than {MAX_EXTENDS_DEPTH} files")
    merged: dict[str, Any] = {}
    parents: list[Path] = []
    for name in names:
        parent = (path.parent / name).resolve()
        if parent in chain:
            cycle = " -> ".join(str(p) for p in (*chain, parent))
            raise SpecError(path, f"extends cycle: {cycle}", field="experiment.extends")
        if not parent.exists():
            raise refuse(f"extended file not found: {parent}")
        read.append(parent)
        if len(read) > MAX_EXTENDED_FILES:
            raise refuse(f"extends reads more than {MAX_EXTENDED_FILES} files")
        parent_text, parent_raw = parse_toml(parent)
        parent_raw, grand = _resolve_extends(parent, parent_text, parent_raw, (*chain, parent), read)
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
    merged, parents = _resolve_extends(path, text, raw, (path.resolve(),), [])
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


def load_for_submit(paths: Iterable[Path | str], workdir: Path) -> list[LoadedSpec]:
    """`load_all`, and every file, directory and eval task each experiment names checked from `workdir` (the
    directory submit runs in): what `submit`, `submit --dry-run` and `run` accept."""
    loaded = load_all(paths)
    checked: set[tuple] = set()
    for item in loaded:
        # The points of a sweep mostly name the same files: each distinct set is checked once.
        eval_ = item.spec.eval
        key = (tuple(named_paths(item.spec)), tuple(eval_.tasks), tuple(c.name for c in eval_.custom))
        if key not in checked:
            check_spec_files(item.spec, workdir, locate=item.locate)
            checked.add(key)
    return loaded


def load_spec(path: Path | str) -> LoadedSpec:
    """Load a spec file that defines exactly one experiment (no [sweep], no [search])."""
    loaded = load_specs(path)
    if len(loaded) != 1:
        raise SpecError(path, f"defines a sweep of {len(loaded)} experiments; submit it instead", field="sweep")
    if loaded[0].search is not None:
        raise SpecError(path, "defines a search; submit it instead", field="search")
    return loaded[0]
