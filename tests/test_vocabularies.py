"""Every vocabulary that has an enum is compared through it: no module outside threadprobe.records
compares a field typed with an enum (``mode``, ``scheduler``, ``stage``...) with a bare string of
that enum's values, as tests/test_authority.py checks for verdicts. The fields and their enums are
read from the records themselves, so a field that gains an enum is scanned from then on. The JSON
keeps its strings (the enums are their own JSON strings)."""

from __future__ import annotations

import ast
import dataclasses
import enum
import typing
from pathlib import Path

import threadprobe.records as records

TOOLKIT = Path(__file__).parents[1] / "toolkit"


def _enum_in(hint: object) -> type[enum.Enum] | None:
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint
    return next((e for a in typing.get_args(hint) if (e := _enum_in(a)) is not None), None)


def vocabularies() -> dict[str, set[str]]:
    """Field name -> the strings of the enum(s) that type it, over every record."""
    out: dict[str, set[str]] = {}
    for value in vars(records).values():
        if isinstance(value, type) and dataclasses.is_dataclass(value):
            for name, hint in typing.get_type_hints(value).items():
                found = _enum_in(hint)
                if found is not None:
                    out.setdefault(name, set()).update(m.value for m in found)
    return out


def _literals(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [x for elt in node.elts for x in _literals(elt)]
    return []


def _keyed(node: ast.AST) -> tuple[str, ast.AST] | None:
    """``x.field["key"]`` or ``x.field.get("key"...)``: the field and the key."""
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute):
        return node.value.attr, node.slice
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
            and isinstance(node.func.value, ast.Attribute) and node.args):
        return node.func.value.attr, node.args[0]
    return None


def bare_strings(source: str, fields: dict[str, set[str]]) -> list[tuple[int, str, str]]:
    """(line, field, literal) wherever a field of an enum's type meets one of its values as a
    string: compared with it, or (a dict keyed by the enum) looked up by it."""
    found = []
    for node in ast.walk(ast.parse(source)):
        keyed = _keyed(node)
        if keyed is not None:
            found += [(node.lineno, keyed[0], text) for text in _literals(keyed[1]) if text in fields.get(keyed[0], ())]
        if not isinstance(node, ast.Compare):
            continue
        sides = [node.left, *node.comparators]
        for side in sides:
            name = side.attr if isinstance(side, ast.Attribute) else side.id if isinstance(side, ast.Name) else ""
            found += [(node.lineno, name, text) for other in sides for text in _literals(other)
                      if text in fields.get(name, ())]
    return found


def test_the_fields_come_from_the_records():
    fields = vocabularies()
    assert "serial" in fields["mode"] and "synchronous" in fields["scheduler"] and "task" in fields["stage"]
    assert "crash" in fields["verdict"] and "iris_lock_audit" in fields["instruments"] and "ok" in fields["outcomes"]


def test_the_scan_finds_a_planted_literal():
    fields = vocabularies()
    planted = ('if r.mode == "serial": pass\nok = choice.scheduler in ("threads", "x")\nerr.stage != "task"\n'
               'n = r.outcomes.get("ok", 0) + r.outcomes["crash"]\n')
    assert bare_strings(planted, fields) == [(1, "mode", "serial"), (2, "scheduler", "threads"), (3, "stage", "task"),
                                             (4, "outcomes", "ok"), (4, "outcomes", "crash")]
    assert bare_strings('if r.mode == Mode.SERIAL: pass\nx = change.mode == "library"\n', fields) == []


def test_no_module_but_records_compares_a_vocabulary_with_bare_strings():
    fields = vocabularies()
    found = {str(p.relative_to(TOOLKIT)): bare_strings(p.read_text(), fields)
             for p in TOOLKIT.rglob("*.py") if p.relative_to(TOOLKIT).as_posix() != "records/__init__.py"}
    assert {k: v for k, v in found.items() if v} == {}
