"""The JSON Schema of a spec file, generated from the same pydantic models that validate specs.

It describes one file as written, and a file may be partial: one that `extends` others, or a base that others
extend, sets only some keys. So no table or key of the spec is required here; tunelab checks the resolved spec
(every file merged) for what is missing, with the file and line. The items of a list (a `[[data.train]]` or
`[[eval.custom]]` table) are never merged, so each must be whole: theirs stay required.
"""

from __future__ import annotations

from typing import Any

from tunelab.experiments.schema import Spec
from tunelab.experiments.search import SearchSection

SCHEMA_ID = "urn:tunelab:spec"


def spec_json_schema() -> dict[str, Any]:
    schema = Spec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID
    schema["title"] = "tunelab experiment spec file"
    schema.pop("required", None)
    for section in schema["properties"].values():
        # An optional table ([notify]) is `anyOf: [its $ref, null]`.
        refs = [section] if "$ref" in section else [s for s in section.get("anyOf", []) if "$ref" in s]
        for ref in refs:
            schema["$defs"][ref["$ref"].removeprefix("#/$defs/")].pop("required", None)
    # [sweep] is consumed before validation (it expands into several specs), so it is added here.
    schema["properties"]["sweep"] = {
        "type": "object",
        "description": 'Dotted keys to lists of values, e.g. "method.r" = [8, 16]; one experiment per combination.',
        "additionalProperties": {"type": "array", "minItems": 1},
    }
    # So is [search] (its trials are drawn by workers); its definitions join the spec's.
    search = SearchSection.model_json_schema(ref_template="#/$defs/{model}")
    schema.setdefault("$defs", {}).update(search.pop("$defs", {}))
    search["description"] = ("A hyperparameter search over dotted spec keys: trials drawn by a sampler (grid, random, "
                             "tpe) and run through the queue; not with [sweep].")
    schema["properties"]["search"] = search
    return schema
