"""The documentation site and the README.

The site is built once per session from a copy of ``docs/`` (so that a concurrent ``make docs`` and
this build never share ``docs/_generated``), over a copy of ``reports/``'s benchmark files with one
file planted (a stamp this test knows) and one left out. The tests check that it builds with no
warning within a minute, that every page is reachable from the index, that the generated pages
follow their sources (the parser, the records, the schema, the benchmark files), and that a real
browser renders the index and a guide.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.report.test_html import chromium_flags
from threadprobe import records
from threadprobe.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.xdist_group("docs")  # one worker builds the site once

LEFT_OUT = "bench-harness"  # its page must say that its file is absent
PLANTED = {"schema": records.BENCH_SCHEMA, "benchmark": "planted", "seconds": [1.5, 2.0, 2.5, 1.75],
           "ratios": {"threads": 1.8, "processes": 1.7},
           "machine": {"cpu": "Planted CPU 9000", "cores": 2, "memory_gib": 8, "os": "PlantedOS", "python": "3.11"},
           "date": "2001-02-03T04:05:06+00:00", "command": "python tests/bench/planted.py --planted"}


@dataclass(frozen=True)
class Site:
    html: Path
    reports: Path
    stderr: str
    returncode: int
    cpu_seconds: float  # the build's own CPU time: what 2 cores must give it, however busy they are

    def text(self, page: str) -> str:
        return (self.html / page).read_text()


def copy_of_the_docs(tree: Path) -> Path:
    """docs/ with what its pages include from outside it (the changelog, the schema files)."""
    shutil.copytree(ROOT / "docs", tree / "docs", ignore=shutil.ignore_patterns("_build", "_generated"))
    shutil.copy(ROOT / "CHANGELOG.md", tree / "CHANGELOG.md")
    (tree / "toolkit").symlink_to(ROOT / "toolkit")
    return tree / "docs"


def sphinx(source: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", "-b", "html", *extra,
                           str(source), str(out)], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    tree = tmp_path_factory.mktemp("site")
    reports = tree / "reports"
    reports.mkdir()
    for path in ROOT.glob("reports/bench*.json"):
        if path.stem != LEFT_OUT:
            shutil.copy(path, reports / path.name)
    (reports / "bench-planted.json").write_text(json.dumps(PLANTED))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = sphinx(copy_of_the_docs(tree), tree / "html", "-D", f"threadprobe_reports={reports}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return Site(tree / "html", reports, done.stderr, done.returncode, cpu)


def test_the_site_builds_with_no_warning_within_a_minute(site: Site) -> None:
    assert site.returncode == 0 and "WARNING" not in site.stderr and "ERROR" not in site.stderr, site.stderr[-3000:]
    assert site.cpu_seconds < 60, site.cpu_seconds


def links(page: Path, root: Path) -> set[Path]:
    """The site's own pages a page links to."""
    found = set()
    for href in re.findall(r'href="([^"#?]+\.html)(?:#[^"]*)?"', page.read_text()):
        if "://" not in href:
            target = (page.parent / href).resolve()
            if target.is_relative_to(root.resolve()) and target.exists():
                found.add(target)
    return found


def test_every_page_is_reachable_from_the_index(site: Site) -> None:
    pages = {p.resolve() for p in site.html.rglob("*.html")
             if not p.relative_to(site.html).parts[0].startswith("_static")
             and p.name not in ("genindex.html", "search.html", "py-modindex.html")}
    seen, todo = set(), [(site.html / "index.html").resolve()]
    while todo:
        page = todo.pop()
        if page not in seen:
            seen.add(page)
            todo.extend(links(page, site.html) - seen)
    assert len(pages) > 20 and pages <= seen, sorted(str(p.relative_to(site.html.resolve())) for p in pages - seen)


def options(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string of a parser and of its subcommands, help-suppressed ones aside."""
    found = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= options(sub)
        elif action.help != argparse.SUPPRESS:
            found |= {s for s in action.option_strings if s.startswith("--")}
    return found


def test_the_cli_reference_has_every_option_of_the_parser(site: Site) -> None:
    page = site.text("reference/cli.html")
    missing = sorted(o for o in options(build_parser()) if f">{o}<" not in page and f"{o}</span>" not in page
                     and o not in page)
    assert not missing and "--race-budget" in page, missing


PLANTED_CLI = '''
import argparse
from threadprobe.cli import build_parser as real


def build_parser():
    """The real parser, with one option more, as a change to threadprobe.cli would add it."""
    parser = real()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub.choices["diagnose"].add_argument("--planted-option", metavar="WHAT", help="planted help text 7e1f")
    return parser
'''


def test_an_option_added_to_the_parser_appears_in_the_cli_page_without_editing_it(site: Site, tmp_path: Path) -> None:
    """The real page's directive over a copy of the parser with one option more shows it; the site,
    built over the real parser, does not: the page follows whatever the parser holds."""
    page = (ROOT / "docs" / "reference" / "cli.md").read_text()
    assert ":module: threadprobe.cli" in page and ":func: build_parser" in page
    src = tmp_path / "planted"
    src.mkdir()
    (src / "planted_cli.py").write_text(PLANTED_CLI)
    (src / "conf.py").write_text("import sys, pathlib\nsys.path.insert(0, str(pathlib.Path(__file__).parent))\n"
                                 "extensions = ['myst_parser', 'sphinxarg.ext', 'sphinx.ext.autodoc']\n"
                                 "nitpick_ignore_regex = [('py:.*', '.*')]\n")
    (src / "index.md").write_text(page.replace(":module: threadprobe.cli", ":module: planted_cli"))
    done = sphinx(src, tmp_path / "html")
    assert done.returncode == 0, done.stderr[-2000:]
    planted = (tmp_path / "html" / "index.html").read_text()
    assert "--planted-option" in planted and "planted help text 7e1f" in planted and "--race-budget" in planted
    real = site.text("reference/cli.html")
    assert "--planted-option" not in real and "--race-budget" in real


def test_the_api_reference_has_every_public_name_of_records(site: Site) -> None:
    page = site.text("reference/api.html")
    public = [n for n, obj in vars(records).items() if not n.startswith("_")
              and getattr(obj, "__module__", None) == records.__name__ and callable(obj)]
    assert "Diagnosis" in public and "is_unsafe" in public
    missing = [n for n in public if f'id="threadprobe.records.{n}"' not in page]
    assert not missing, missing
    assert 'id="threadprobe.scheduling.pipeline.scheduler"' in page and 'id="threadprobe.Probe"' in page


def test_the_schema_page_has_every_field_of_the_newest_schema(site: Site) -> None:
    number = records.DIAGNOSIS_SCHEMA.rsplit("/", 1)[1]
    schema = json.loads((ROOT / "toolkit" / "records" / "schema" / f"diagnosis-{number}.schema.json").read_text())
    page = site.text("_generated/schema.html")
    fields = set(schema["properties"]) | {f for d in schema["$defs"].values() for f in (d.get("properties") or {})}
    missing = sorted(f for f in fields if f">{f}<" not in page)
    assert records.DIAGNOSIS_SCHEMA in page and not missing, missing


def test_the_format_history_is_the_records_docstring(site: Site) -> None:
    page = site.text("_generated/formats.html")
    for schema in records.READABLE_DIAGNOSES:
        assert schema in page


def test_the_changelog_and_the_evidence_colours_are_on_the_site(site: Site) -> None:
    assert "Keep a Changelog" in site.text("changelog.html") and "Unreleased" in site.text("changelog.html")
    page = site.text("explanations/verdicts.html")
    assert "no failure seen" in page and "race clean" in page and page.count('class="cell"') >= 3


def test_a_benchmark_page_shows_its_file_stamp_data_and_plot(site: Site) -> None:
    page = site.text("_generated/benchmarks/bench-planted.html")
    for text in ("Planted CPU 9000", "2001-02-03T04:05:06+00:00", "python tests/bench/planted.py --planted", "1.8"):
        assert text in page, text
    assert re.search(r'<img[^>]+src="[^"]*bench-planted-repetitions\.png"', page)
    assert (site.html / "_images" / "bench-planted-repetitions.png").exists()


def test_a_benchmark_whose_file_is_absent_says_so(site: Site) -> None:
    page = site.text(f"_generated/benchmarks/{LEFT_OUT}.html")
    assert f"No <code class=\"docutils literal notranslate\"><span class=\"pre\">reports/{LEFT_OUT}.json</span>" in page
    assert "<img" not in page.split('id="main-content"')[-1].split("footer")[0]


def test_every_benchmark_file_in_reports_has_its_page_with_its_own_stamp(site: Site) -> None:
    for path in site.reports.glob("bench*.json"):
        data = json.loads(path.read_text())
        page = site.text(f"_generated/benchmarks/{path.stem}.html")
        assert str(data.get("date") or "not recorded in this file") in page, path.name


# ----------------------------------------------------------------------------------------------
# a real browser


@pytest.mark.browser
@pytest.mark.parametrize("page", ["index.html", "guides/gating.html"])
def test_a_real_browser_renders_the_index_and_a_guide(site: Site, page: str, tmp_path: Path) -> None:
    flags = chromium_flags(tmp_path / "profile")
    dom = subprocess.run(flags + ["--dump-dom", (site.html / page).as_uri()], capture_output=True, text=True,
                         timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "User guides" in dom.stdout and "Gating a new library build" in dom.stdout
    errors = [line for line in dom.stderr.splitlines() if "Uncaught" in line or ("CONSOLE" in line and "rror" in line)]
    assert not errors, errors


def commands_in_prose() -> list[tuple[str, str]]:
    """Every whole ``threadprobe ...`` command the README and the pages show, in code blocks or inline."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        if "_build" in path.parts or "_generated" in path.parts:
            continue
        text = path.read_text()
        blocks = [body for lang, body in re.findall(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)
                  if lang in ("", "sh", "text", "console")]
        inline = [c for c in re.findall(r"`(threadprobe [^`]+)`", text) if " --" in c]  # a name alone is no command
        for line in [line for block in blocks for line in block.splitlines()] + inline:
            line = re.split(r"#|>|\|", line, maxsplit=1)[0].strip()  # a comment, a redirection, a pipe
            if line.startswith("threadprobe ") and "..." not in line and "FILE" not in line.split()[1]:
                found.append((path.name, line))
    return found


def strict(parsers: list[argparse.ArgumentParser]) -> None:
    """No abbreviations: the pages must spell every option as the parser names it."""
    for parser in parsers:
        parser.allow_abbrev = False
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                strict(list(action.choices.values()))


def test_every_command_the_pages_show_is_one_the_parser_takes() -> None:
    """Prose is written by hand: a renamed option must break this test, not a reader's command."""
    shown = commands_in_prose()
    assert len(shown) > 10
    parser = build_parser()
    strict([parser])
    bad = []
    for where, line in shown:
        try:
            parser.parse_args(shlex.split(line)[1:])
        except (SystemExit, Exception) as exc:  # noqa: BLE001 (the parser's own errors, whatever they are)
            bad.append(f"{where}: {line}: {exc}")
    assert not bad, bad
