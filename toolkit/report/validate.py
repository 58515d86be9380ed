"""Checking a report against the JSON Schema shipped in ``threadprobe/records/schema/``.

Other tools read diagnosis.json too; the schema is the contract: ``threadprobe validate`` checks
a report against it, and the tests check every report they write (tests/conftest.py).
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from threadprobe.records import DIAGNOSIS_SCHEMA

SCHEMAS = {"threadprobe.diagnosis/1": "diagnosis-1.schema.json", "threadprobe.diagnosis/2": "diagnosis-2.schema.json",
           "threadprobe.diagnosis/3": "diagnosis-3.schema.json", "threadprobe.diagnosis/4": "diagnosis-4.schema.json",
           "threadprobe.diagnosis/5": "diagnosis-5.schema.json"}


@lru_cache(maxsize=None)
def schema(name: str = DIAGNOSIS_SCHEMA) -> dict[str, Any]:
    return json.loads(resources.files("threadprobe.records").joinpath("schema", SCHEMAS[name]).read_text())


def errors(data: Any) -> list[str]:
    """Every way ``data`` breaks its schema, as 'path: message' lines (empty when valid)."""
    import jsonschema

    if not isinstance(data, dict) or data.get("schema") not in SCHEMAS:
        got = data.get("schema") if isinstance(data, dict) else type(data).__name__
        return [f"$: not a known threadprobe report (schema: {got!r}; known: {', '.join(SCHEMAS)})"]
    validator = jsonschema.Draft202012Validator(schema(data["schema"]))
    found = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    return [f"$.{'.'.join(str(p) for p in e.absolute_path) or ''}: {e.message[:200]}" for e in found]
