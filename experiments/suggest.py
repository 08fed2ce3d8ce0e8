"""'Did you mean' suggestions for unknown names: spec keys, eval tasks, --where fields."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from pydantic import BaseModel
from tunelab.experiments.schema import Spec


def _model_in(annotation) -> type[BaseModel] | None:
    candidates = [annotation, *(getattr(annotation, "__args__", None) or ())]
    return next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)


def _model_at(loc: tuple, root: type[BaseModel]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = root
    parts = list(loc[:-1])
    while parts:
        part = parts.pop(0)
        if model is None or isinstance(part, int):
            continue
        info = model.model_fields.get(str(part))
        if info is None:
            return None
        annotation = info.annotation
        if getattr(annotation, "__origin__", None) is dict:
            # A table of free keys to tables (a search's params): the next part is a key, not a field.
            model = _model_in(annotation.__args__[1])
            if parts:
                parts.pop(0)
            continue
        model = _model_in(annotation)
    return model


def suggestion_for_extra(loc: tuple, root: type[BaseModel] = Spec) -> str:
    """' (did you mean "learning_rate"?)' for a near miss, or a list of the valid keys; `loc` is a location
    under `root` (the spec, or a table validated on its own such as [search])."""
    model = _model_at(loc, root)
    if model is None:
        return ""
    known = list(model.model_fields)
    close = close_names(str(loc[-1]), known)
    if close:
        return f" ({did_you_mean(close)})"
    return f" (valid keys: {', '.join(known)})"


def close_names(name: str, known: Iterable[str], *, limit: int = 2) -> list[str]:
    """The known names `name` most likely meant: those it abbreviates (lr: learning_rate, lr_scheduler; arc:
    arc_challenge), else the nearest spellings (lerning_rate: learning_rate)."""
    known = list(dict.fromkeys(known))
    lowered = name.lower()
    if len(lowered) >= 2:
        abbreviated = [k for k in known if k.lower().startswith(lowered)
                       or "".join(word[:1] for word in k.lower().split("_")) == lowered]
        if abbreviated:
            return abbreviated[:limit]
    return difflib.get_close_matches(name, known, n=limit, cutoff=0.6)[:1]


def did_you_mean(names: list[str]) -> str:
    """'did you mean "a"?' or 'did you mean "a" or "b"?'."""
    return "did you mean " + " or ".join(f'"{n}"' for n in names) + "?"
