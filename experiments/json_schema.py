"""The JSON Schema of a spec file, generated from the same pydantic models that validate specs.

It describes one file as written, and a file may be partial: one that `extends` others, or a base that others
extend, sets only some keys. So no table or key of the spec is required here; tunelab checks the resolved spec
(every file merged) for what is missing, with the file and line. The items of a list (a `[[data.train]]` or
`[[eval.custom]]` table) are never merged, so each must be whole: theirs stay required.
"""

from __future__ import annotations

from typing import Any

from tunelab.experiments.schema import Spec

SCHEMA_ID = "urn:tunelab:spec"


def spec_json_schema() -> dict[str, Any]:
    schema = Spec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID
    schema["title"] = "tunelab experiment spec file"
    schema.pop("required", None)
    for section in schema["properties"].values():
        name = section["$ref"].removeprefix("#/$defs/")
        schema["$defs"][name].pop("required", None)
    # [sweep] is consumed before validation (it expands into several specs), so it is added here.
    schema["properties"]["sweep"] = {
        "type": "object",
        "description": 'Dotted keys to lists of values, e.g. "method.r" = [8, 16]; one experiment per combination.',
        "additionalProperties": {"type": "array", "minItems": 1},
    }
    return schema
