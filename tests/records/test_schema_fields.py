"""The JSON Schema of a diagnosis, field by field against the records it describes: a field added
to a record and not to the schema (or left in the schema after leaving the record) fails here."""

from __future__ import annotations

import dataclasses
import json
from importlib import resources

import pytest

from threadprobe import records

SCHEMA = json.loads(resources.files("threadprobe.records").joinpath("schema/diagnosis-5.schema.json").read_text())
PAIRS = [("result", records.Result), ("safety", records.Safety), ("speed", records.Speed), ("waits", records.Waits),
         ("evidence", records.Evidence), ("race_pass", records.RacePass),
         ("race_pair", records.RacePair), ("frame", records.Frame), ("choice", records.Choice),
         ("audit", records.LockAudit)]


def json_keys(cls: type) -> set[str]:
    """The keys a record writes: to_json writes every field under its own name."""
    return {f.name for f in dataclasses.fields(cls)}


@pytest.mark.parametrize("name, cls", PAIRS)
def test_every_field_of_a_record_is_in_its_schema_and_nothing_else(name, cls):
    described = set(SCHEMA["$defs"][name]["properties"])
    written = json_keys(cls)
    assert written - described == set(), f"{cls.__name__} fields missing from the schema's {name}"
    assert described - written == set(), f"the schema's {name} describes fields {cls.__name__} lacks"


def test_the_diagnosis_itself():
    written = json_keys(records.Diagnosis) | {"schema"}
    assert written == set(SCHEMA["properties"]), written ^ set(SCHEMA["properties"])


def test_an_audit_row_is_one_record():
    row = SCHEMA["$defs"]["audit"]["properties"]["unlocked_by_caller"]["items"]["properties"]
    assert set(row) == json_keys(records.UnlockedCalls)
