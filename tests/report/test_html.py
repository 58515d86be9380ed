"""The HTML report: self-contained, complete, and rendered by a real browser without errors."""

import re
import shutil
import subprocess

import pytest

from tests.conftest import PLANTED
from threadprobe.harness import fingerprint
from threadprobe.report import html as htmlreport
from threadprobe.report.compare import compare
from threadprobe.diagnosis.detect import failure_upper95
from threadprobe.diagnosis.options import EvidenceOptions, Grid, Options, Output, Planner, Selection
from threadprobe.records import RemedySearch, Safety
from threadprobe.scheduling.pipeline import diagnose


# One worker builds the diagnosis once (make test runs --dist loadgroup), not one per worker.
pytestmark = pytest.mark.xdist_group("htmlreport")


@pytest.fixture(scope="session")  # session: xdist interleaves modules, which would rebuild a module fixture
def diagnosis(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed for the planted defects")
    root = tmp_path_factory.mktemp("html")
    return diagnose(Options(selection=Selection(probes=("planted.crash", "planted.safe", "planted.gil"),
                                                plugins=(str(PLANTED),), entry_points=False),
                            grid=Grid(threads=(2,), processes=(2,)),
                            planner=Planner(trials=1, timing_trials=1, budget=2.0),
                            output=Output(out=str(root / "reports"), workdir=str(root / "w")),
                            evidence=EvidenceOptions(remedies=RemedySearch.NONE)),
                    fingerprint=fingerprint.collect)


@pytest.fixture(scope="session")  # session: xdist interleaves modules, which would rebuild a module fixture
def page(diagnosis, tmp_path_factory):
    out = tmp_path_factory.mktemp("page")
    def clean(r):  # what the crashing probe looked like in a baseline where it was safe
        return r.replace(verdict="safe", safety=Safety({"ok": r.trials}, failure_upper95(0, r.trials)))

    baseline = diagnosis.replace(results=tuple(clean(r) if r.probe == "planted.crash" else r
                                               for r in diagnosis.results))
    return htmlreport.write(diagnosis, out, compare(baseline, diagnosis))


def test_the_page_makes_no_network_request(page):
    html = page.read_text()
    refs = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert refs and all(ref.startswith(("data:", "#", "repro/")) for ref in refs), refs
    assert "<script" not in html and "@import" not in html and "url(" not in html


def test_the_page_has_every_section(page, diagnosis):
    html = page.read_text()
    for section in ("changes", "recommendation", "matrix", "scaling", "evidence", "fingerprint"):
        assert f'id="{section}"' in html
    assert "REGRESSION: planted.crash" in html  # the baseline section comes first
    assert html.index('id="changes"') < html.index('id="matrix"')
    cells = re.findall(r'class="cell verdict-(\w+)"', html)
    assert len(cells) == len(diagnosis.results) and "crash" in cells and "safe" in cells
    assert html.count('src="data:image/png;base64,') >= 1
    assert "repro/planted.crash.py" in html and "HDF5 copies" in html


def chromium_flags(profile) -> list[str]:
    """Headless Chromium with nothing that reaches the network; skips when it is not installed."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (.ci/browser-up installs it)")
    return [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0"]


@pytest.mark.browser
def test_a_real_browser_renders_the_matrix_and_the_plots_without_errors(page, tmp_path):
    flags = chromium_flags(tmp_path / "profile")
    dom = subprocess.run(flags + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("verdict-crash") >= 1 and "<table id=\"verdicts\"" in dom.stdout
    assert dom.stdout.count("<img") >= 1
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    shot = tmp_path / "page.png"
    done = subprocess.run(flags + [f"--screenshot={shot}", "--window-size=1400,2400", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.exists()
    assert shot.stat().st_size > 50_000  # a rendered matrix and plots, not a blank page


def test_two_diagnoses_side_by_side_set_a_gil_off_cell_beside_the_old_builds_cell(tmp_path):
    from threadprobe.records import Diagnosis, GilState, Result, Safety

    def cell(verdict, gil=GilState.AS_IMPORTED):
        return Result(probe="nc.read", dependency="netCDF4", mode="threads", workers=2, processes=1, threads=2,
                      trials=30, verdict=verdict, gil=gil,
                      safety=Safety({"ok": 30 if verdict == "safe" else 25, "crash": 0 if verdict == "safe" else 5},
                                    failure_upper95(0 if verdict == "safe" else 5, 30)))

    def diag(results, python):
        return Diagnosis(created="t", threadprobe="0", config={}, results=tuple(results),
                         fingerprint={"python": python, "packages": {}}, interpreter=python["version"])

    old = diag([cell("safe")], {"version": "3.11.7", "gil_enabled": True})
    new = diag([cell("safe"), cell("crash", GilState.OFF)],
               {"version": "3.13.5", "gil_enabled": False, "free_threaded_build": True, "gil_reenabled_by": []})
    path = htmlreport.write_pair(old, new, compare(old, new), tmp_path / "pair.html")
    page = path.read_text()
    assert "<th colspan=\"2\">threads 2, GIL off</th>" in page and "3.11.7" in page and "3.13.5" in page
    assert page.count('class="cell fallback"') == 1  # the GIL build's cell, set beside the GIL-off one
    assert "REGRESSION: nc.read (threads 2, GIL off) safe -&gt; crash" in page
