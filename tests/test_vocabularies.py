"""Every vocabulary that has an enum is compared through it: no module outside threadprobe.records
compares a field typed with an enum (``mode``, ``scheduler``, ``stage``...) with a bare string of
that enum's values, as tests/test_authority.py checks for verdicts. The fields and their enums are
read from the records themselves, so a field that gains an enum is scanned from then on; so are the
names a module types with an enum (a parameter ``state: ThreadState``, a ``dict[ThreadState, int]``,
the keys of a loop over one). The JSON keeps its strings (the enums are their own JSON strings)."""

from __future__ import annotations

import ast
import dataclasses
import enum
import typing
from pathlib import Path

import threadprobe.diagnosis.options as options
import threadprobe.records as records
from tests.astscan import literals
from tests.astscan import name as name_of

TOOLKIT = Path(__file__).parents[1] / "toolkit"


def _enums_in(hint: object) -> list[type[enum.Enum]]:
    """Every enum in a type hint: ``Scheduler | Auto`` has two, ``dict[ThreadState, int]`` one."""
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return [hint]
    return [e for a in typing.get_args(hint) for e in _enums_in(a)]


def vocabularies() -> dict[str, set[str]]:
    """Field name -> the strings of the enum(s) that type it, over every record (and a diagnosis's options)."""
    out: dict[str, set[str]] = {}
    for value in [*vars(records).values(), *vars(options).values()]:
        if isinstance(value, type) and dataclasses.is_dataclass(value):
            for name, hint in typing.get_type_hints(value).items():
                for found in _enums_in(hint):
                    out.setdefault(name, set()).update(m.value for m in found)
    return out


def enums() -> dict[str, set[str]]:
    """Enum class name -> its strings, for every enum the records define."""
    return {name: {m.value for m in value} for name, value in vars(records).items()
            if isinstance(value, type) and issubclass(value, enum.Enum) and value.__module__ == records.__name__}


def _keyed(node: ast.AST) -> tuple[str, ast.AST] | None:
    """``x.field["key"]``, ``field["key"]`` or ``x.field.get("key"...)``: the field and the key."""
    if isinstance(node, ast.Subscript) and name_of(node.value):
        return name_of(node.value), node.slice
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" and node.args:
        return name_of(node.func.value), node.args[0]
    return None


def _typed(tree: ast.AST, fields: dict[str, set[str]]) -> dict[str, set[str]]:
    """Names this module types with an enum, besides the records' fields: parameters and variables
    annotated with one (or with a container of one), variables assigned from a function of the
    module that returns one, and the keys of a loop over a dict keyed by one."""
    kinds = enums()

    def strings(annotation: ast.AST | None) -> set[str]:
        return {v for n in ast.walk(annotation) if isinstance(n, ast.Name) for v in kinds.get(n.id, ())} \
            if annotation is not None else set()

    found: dict[str, set[str]] = {}
    returns = {n.name: strings(n.returns) for n in ast.walk(tree)
               if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    for node in ast.walk(tree):
        named: list[tuple[str, set[str]]] = []
        if isinstance(node, ast.arg):
            named.append((node.arg, strings(node.annotation)))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            named.append((node.target.id, strings(node.annotation)))
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and name_of(node.value.func) in returns:
            named += [(t.id, returns[name_of(node.value.func)]) for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, (ast.For, ast.comprehension)):
            called = isinstance(node.iter, ast.Call) and isinstance(node.iter.func, ast.Attribute)
            over = node.iter.func.value if called and node.iter.func.attr in ("items", "keys") else node.iter
            key = node.target.elts[0] if isinstance(node.target, ast.Tuple) and node.target.elts else node.target
            if isinstance(key, ast.Name):
                named.append((key.id, {*fields.get(name_of(over), ()), *found.get(name_of(over), ())}))
        for name, values in named:
            if values:
                found.setdefault(name, set()).update(values)
    return found


def bare_strings(source: str, fields: dict[str, set[str]]) -> list[tuple[int, str, str]]:
    """(line, name, literal) wherever a field of an enum's type (or a name this module types with
    one) meets one of its values as a string: compared with it, or (a dict keyed by the enum)
    looked up by it."""
    tree = ast.parse(source)
    names = {**fields}
    for name, values in _typed(tree, fields).items():
        names[name] = names.get(name, set()) | values
    found = []
    for node in ast.walk(tree):
        keyed = _keyed(node)
        if keyed is not None:
            found += [(node.lineno, keyed[0], text) for text in literals(keyed[1]) if text in names.get(keyed[0], ())]
        if not isinstance(node, ast.Compare):
            continue
        sides = [node.left, *node.comparators]
        found += [(node.lineno, name_of(side), text) for side in sides for other in sides for text in literals(other)
                  if text in names.get(name_of(side), ())]
    return sorted(set(found))


def test_the_fields_come_from_the_records():
    fields = vocabularies()
    assert "serial" in fields["mode"] and "synchronous" in fields["scheduler"] and "task" in fields["stage"]
    assert "crash" in fields["verdict"] and "iris_lock_audit" in fields["instruments"] and "ok" in fields["outcomes"]
    assert "interp" in fields["thread_states"] and "queued" in fields["states"] and "serialized" in fields["scaling"]
    assert "spread" in fields["pin"] and "drd" in fields["tool"] and "all" in fields["remedies"]
    assert {"auto", "threads"} <= fields["scheduler"] and {"fork", "spawn", "forkserver"} <= fields["context"]


def test_the_scan_finds_a_planted_literal():
    fields = vocabularies()
    planted = ('if r.mode == "serial": pass\nok = choice.scheduler in ("threads", "x")\nerr.stage != "task"\n'
               'n = r.outcomes.get("ok", 0) + r.outcomes["crash"]\n'
               'if request.scheduler != "auto" and choice.context == "fork": pass\n')
    assert bare_strings(planted, fields) == [(1, "mode", "serial"), (2, "scheduler", "threads"), (3, "stage", "task"),
                                             (4, "outcomes", "crash"), (4, "outcomes", "ok"), (5, "context", "fork"),
                                             (5, "scheduler", "auto")]
    assert bare_strings('if r.mode == Mode.SERIAL: pass\nx = change.mode == "library"\n', fields) == []


def test_the_scan_follows_names_typed_with_an_enum():
    """A parameter or variable annotated with an enum (or keyed by one), a variable assigned from
    a function of the module that returns one, and the keys of a loop over such a dict."""
    fields = vocabularies()
    planted = '\n'.join([
        'def shares(counts: Mapping[ThreadState, int]) -> dict[ThreadState, float]:',
        '    return {s: n for s, n in counts.items() if s != "queued"}',  # 2: a loop's key
        'def f(state: ThreadState | None, how: str) -> bool:',
        '    whole = shares({})',
        '    return state == "gil" or whole.get("lock", 0) > 0 or how == "gil"',  # 5: a parameter, a result
        'r.scaling == "scales"; trial.pin != "one"; races.tool == "helgrind"; r.thread_states["interp"]',
        'for state in run.states: state == "io"',  # 7: a loop over a field
        'def g(asked: Scheduler | Auto, start: StartMethod | None) -> bool:',  # 8: a union of enums
        '    return asked == "auto" or start == "spawn" or asked == "threads"',
    ])
    assert bare_strings(planted, fields) == [
        (2, "s", "queued"), (5, "state", "gil"), (5, "whole", "lock"), (6, "pin", "one"), (6, "scaling", "scales"),
        (6, "thread_states", "interp"), (6, "tool", "helgrind"), (7, "state", "io"), (9, "asked", "auto"),
        (9, "asked", "threads"), (9, "start", "spawn")]


def test_no_module_but_records_compares_a_vocabulary_with_bare_strings():
    fields = vocabularies()
    found = {str(p.relative_to(TOOLKIT)): bare_strings(p.read_text(), fields)
             for p in TOOLKIT.rglob("*.py") if p.relative_to(TOOLKIT).as_posix() != "records/__init__.py"}
    assert {k: v for k, v in found.items() if v} == {}
