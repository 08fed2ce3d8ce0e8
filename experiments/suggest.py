"""'Did you mean' suggestions for unknown spec keys."""

from __future__ import annotations

import difflib

from pydantic import BaseModel
from tunelab.experiments.schema import Spec


def _model_at(loc: tuple) -> type[BaseModel] | None:
    model: type[BaseModel] | None = Spec
    for part in loc[:-1]:
        if model is None or isinstance(part, int):
            continue
        info = model.model_fields.get(str(part))
        if info is None:
            return None
        annotation = info.annotation
        inner = getattr(annotation, "__args__", None)
        candidates = [annotation, *(inner or ())]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
    return model


def suggestion_for_extra(loc: tuple) -> str:
    """' (did you mean "learning_rate"?)' for a near miss, or a list of the valid keys."""
    model = _model_at(loc)
    if model is None:
        return ""
    known = list(model.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    if close:
        return f' (did you mean "{close[0]}"?)'
    return f" (valid keys: {', '.join(known)})"
