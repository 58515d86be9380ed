"""Sphinx extension: the pages of threadprobe's site that are made from code and data.

At ``builder-inited`` it writes ``docs/_generated/`` afresh (a file only when its text changed, so
Sphinx rereads only what moved):

- ``schema.md``: every field of the newest diagnosis JSON Schema, a table per object;
- ``formats.md``: the format history, from the docstring at the top of ``threadprobe.records``;
- ``pytest-options.md``: the pytest plugin's options, ini keys and markers, from pytest's parser;
- ``records-api.md``: an autodoc entry for every public record, enum and function of ``records``;
- ``benchmarks/*.md``: one page per benchmark, from ``reports/bench*.json`` (``benchmarks.py``);
- ``evidence-colours.html``: the report's cells for each strength of evidence, drawn by the same
  code as the report.

The folder of benchmark files is the config value ``threadprobe_reports`` (default ``reports``
beside ``docs``), so a test can build the site over planted files.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import benchmarks

GENERATED = "_generated"


def write_if_changed(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


# ----------------------------------------------------------------------------------------------
# the report's schema and its history


def schema_file() -> Path:
    from threadprobe import records

    number = records.DIAGNOSIS_SCHEMA.rsplit("/", 1)[1]
    return Path(records.__file__).parent / "schema" / f"diagnosis-{number}.schema.json"


def _type(spec: dict[str, Any]) -> str:
    if "$ref" in spec:
        name = spec["$ref"].rsplit("/", 1)[1]
        return f"[{name}](#schema-{name})"
    if "const" in spec:
        return f"`{json.dumps(spec['const'])}`"
    if "enum" in spec:
        return "one of " + ", ".join(f"`{json.dumps(v)}`" for v in spec["enum"])
    if "oneOf" in spec or "anyOf" in spec:
        return " or ".join(_type(s) for s in spec.get("oneOf", spec.get("anyOf", [])))
    kind = spec.get("type", "any")
    kind = " or ".join(kind) if isinstance(kind, list) else kind
    if kind == "array" and isinstance(spec.get("items"), dict):
        return f"array of {_type(spec['items'])}"
    if isinstance(spec.get("additionalProperties"), dict):
        return f"object of {_type(spec['additionalProperties'])}"
    return f"{kind}"


def _object(name: str, spec: dict[str, Any], level: str) -> list[str]:
    """A table of an object's fields, then one for each field that is itself an object (or an
    array of them) with fields of its own, named by its path."""
    lines = [f"(schema-{name})=", f"{level} `{name}`", ""]
    if spec.get("description"):
        lines += [spec["description"], ""]
    props = spec.get("properties") or {}
    if not props:
        return lines + [f"Type: {_type(spec)}.", ""]
    required = set(spec.get("required") or ())
    lines += ["| field | type | required | meaning |", "| --- | --- | --- | --- |"]
    nested = []
    for field, sub in props.items():
        inner = sub.get("items") if sub.get("type") == "array" and isinstance(sub.get("items"), dict) else sub
        kind = _type(sub)
        if inner.get("properties"):
            nested.append((f"{name}.{field}", inner))
            kind = f"[{'array of ' if inner is not sub else ''}object](#schema-{name}.{field})"
        what = (sub.get("description") or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{field}` | {kind.replace('|', chr(92) + '|')} | {'yes' if field in required else ''} "
                     f"| {what} |")
    lines.append("")
    for path, inner in nested:
        lines += _object(path, inner, "####")
    return lines


def schema_page() -> str:
    path = schema_file()
    schema = json.loads(path.read_text())
    lines = ["# The report's JSON Schema", "",
             f"`reports/diagnosis.json` names its format in `schema` (`{schema['$id']}` now). This page is made from "
             f"the schema file itself, `toolkit/records/schema/{path.name}`; `threadprobe validate FILE` checks a "
             "report against it. Older formats are still read: see [the format history](formats.md).", "",
             *_object("diagnosis", schema, "##")]
    for name, sub in (schema.get("$defs") or {}).items():
        lines += _object(name, sub, "###")
    lines += ["## The schema file", "", f"```{{literalinclude}} ../../toolkit/records/schema/{path.name}",
              ":language: json", "```", ""]
    return "\n".join(lines)


def formats_page() -> str:
    from threadprobe import records

    doc = inspect.getdoc(records) or ""
    start = doc.find("Every JSON document names its schema")
    history = doc[start:] if start >= 0 else doc
    return "\n".join(["# Format history", "",
                      "Every JSON file threadprobe writes names its format. This history is the docstring at the "
                      "top of `threadprobe.records` (`toolkit/records/__init__.py`), shown as it is:", "",
                      history, ""])


# ----------------------------------------------------------------------------------------------
# the pytest plugin's options, and every public name of records


def pytest_options_page() -> str:
    from _pytest.config import Config

    config = Config.fromdictargs({}, ["-p", "no:cacheprovider"])
    parser = config._parser
    lines = ["| option | meaning |", "| --- | --- |"]
    for group in parser._groups:
        if group.name != "threadprobe":
            continue
        for option in group.options:
            attrs = option.attrs()
            meta = f" {attrs['metavar']}" if attrs.get("metavar") else ""
            lines.append(f"| `{', '.join(option.names())}{meta}` | {(attrs.get('help') or '').replace('|', '/')} |")
    inis = [(name, spec[0]) for name, spec in parser._inidict.items()
            if name.startswith("threadprobe") or name.startswith("thread_unsafe")]
    lines += ["", "Keys of the `[tool.pytest.ini_options]` table (or `pytest.ini`):", "",
              "| ini key | meaning |", "| --- | --- |", *[f"| `{n}` | {h} |" for n, h in inis], "",
              "Markers:", ""]
    markers = [m for m in config.getini("markers")
               if m.split("(")[0].split(":")[0] in ("threadprobe", "thread_unsafe", "parallel_threads", "iterations")]
    lines += [f"- `{m.split(':', 1)[0]}`:{m.split(':', 1)[1]}" for m in markers]
    return "\n".join(lines) + "\n"


def records_api_page() -> str:
    from threadprobe import records

    names = [name for name, obj in vars(records).items()
             if not name.startswith("_") and getattr(obj, "__module__", None) == records.__name__
             and (inspect.isclass(obj) or inspect.isfunction(obj))]
    lines = []
    for name in names:
        obj = getattr(records, name)
        directive = "autofunction" if inspect.isfunction(obj) else "autoclass"
        lines += ["```{eval-rst}", f".. {directive}:: threadprobe.records.{name}", "```", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# the report's greens


def evidence_colours() -> str:
    """The key to the greens, then one probe's threads cell as the report draws it, from the same
    trials without and with a clean race pass."""
    import html

    from threadprobe.diagnosis.detect import failure_upper95
    from threadprobe.records import RacePass, RaceSchedule, RaceStatus, Result, Safety, Speed, with_races
    from threadprobe.report import html as htmlreport
    from threadprobe.report import strength

    def example(trials: int) -> Result:
        return Result(probe="netcdf4.example", dependency="netCDF4", mode="threads", workers=2, processes=1, threads=2,
                      trials=trials, verdict="safe", safety=Safety({"ok": trials}, failure_upper95(0, trials)),
                      speed=Speed(speedup=1.62))

    def counted(unordered: int) -> RacePass:  # a clean pass whose scheduling shim counted its unordered calls
        return RacePass("helgrind", 8, 2000, RaceStatus.CLEAN, schedule=RaceSchedule.MEET, sections=4 * unordered,
                        unordered=unordered, overlap_pairs=2 * unordered, gil_enabled=True)

    shown = [("make diagnose, 11 clean trials", example(11)),
             ("make diagnose, 149 clean trials", example(149)),
             ("make races (a strong pass), then make diagnose: the same 11 trials", with_races(example(11), counted(1500))),
             ("make races (a thin pass: 20 calls unordered), then make diagnose", with_races(example(11), counted(20)))]
    cells = "".join(
        f'<tr><td>{html.escape(what)}</td><td class="cell" style="{htmlreport.cell_css(r)}">'
        f"{html.escape(strength.word(r) or '')}<br><small>{html.escape(htmlreport.cell(r))}</small><br>"
        f"<small>{html.escape(strength.race_text(r))}</small></td></tr>" for what, r in shown)
    return (strength.legend_html() + '<p>One threads cell, as the HTML report draws it:</p>'
            f'<table class="evidence-legend"><tr><th>evidence</th><th>threads 2</th></tr>{cells}</table>')


# ----------------------------------------------------------------------------------------------


def generate(app: Any) -> None:
    src = Path(app.srcdir)
    out = src / GENERATED
    reports = Path(app.config.threadprobe_reports or src.parent / "reports")
    if not reports.is_absolute():
        reports = (src.parent / reports).resolve()
    write_if_changed(out / "schema.md", schema_page())
    write_if_changed(out / "formats.md", formats_page())
    write_if_changed(out / "pytest-options.md", pytest_options_page())
    write_if_changed(out / "records-api.md", records_api_page())
    write_if_changed(out / "evidence-colours.html", evidence_colours())
    pages = out / "benchmarks"
    wanted = set()
    for bench in benchmarks.known(reports):
        wanted.add(f"{bench.stem}.md")
        write_if_changed(pages / f"{bench.stem}.md", benchmarks.page(bench, reports, pages))
    for stale in pages.glob("*.md"):  # a file removed from reports/ takes its page with it
        if stale.name not in wanted:
            stale.unlink()


def setup(app: Any) -> dict[str, Any]:
    app.add_config_value("threadprobe_reports", "", "env")
    app.connect("builder-inited", generate)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
