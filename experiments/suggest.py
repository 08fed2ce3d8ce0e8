"""'Did you mean' suggestions for unknown spec keys."""

from __future__ import annotations

import difflib

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
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    if close:
        return f' (did you mean "{close[0]}"?)'
    return f" (valid keys: {', '.join(known)})"
