"""The shipped JSON Schema accepts real reports and names what is wrong with broken ones."""

import json
import subprocess
import sys

from tests.conftest import TRIVIAL
from tests.records.test_records import as_format_4
from threadprobe.harness import fingerprint
from threadprobe.diagnosis.diagnose import diagnose
from threadprobe.diagnosis.options import Grid, Options, Output, Planner, Selection
from threadprobe.report.validate import errors


def real_report(tmp_path):
    d = diagnose(Options(selection=Selection(plugins=(str(TRIVIAL),), entry_points=False),
                         grid=Grid(threads=(2,), processes=(2,)),
                         planner=Planner(trials=1, timing_trials=1, budget=0.5),
                         output=Output(workdir=str(tmp_path / "w")),
                         evidence=None),
                 fingerprint=fingerprint.light)
    return d.to_json()


def test_a_real_report_is_valid_and_broken_ones_are_not(tmp_path):
    data = real_report(tmp_path)
    assert errors(data) == []
    broken = json.loads(json.dumps(data))
    broken["results"][0]["verdict"] = "fine"
    del broken["results"][1]["safety"]["outcomes"]["hang"]
    found = errors(broken)
    assert any("results.0.verdict" in e for e in found) and any("results.1.safety.outcomes" in e for e in found)
    assert errors({"schema": "something/else"})[0].startswith("$: not a known threadprobe report")


def test_cli_validate_exit_codes(tmp_path):
    good, older = tmp_path / "good.json", tmp_path / "format-4.json"
    good.write_text(json.dumps(real_report(tmp_path)))
    older.write_text(json.dumps(as_format_4(real_report(tmp_path))))  # written before results were grouped
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": "threadprobe.diagnosis/1"}))
    run = lambda f: subprocess.run([sys.executable, "-m", "threadprobe.cli", "validate", str(f)], capture_output=True,
                                   text=True, timeout=60)
    ok, old, no, missing = run(good), run(older), run(bad), run(tmp_path / "missing.json")
    assert ok.returncode == 0 and "valid" in ok.stdout
    assert old.returncode == 0 and "valid" in old.stdout, old.stderr
    assert no.returncode == 2 and "required property" in no.stderr and no.stderr.count("\n") == 1
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_the_tests_catch_a_report_that_breaks_its_schema(tmp_path):
    """What tests/conftest.py runs after every test that has a tmp_path: a valid report passes, a
    broken one anywhere below is named with the field it breaks."""
    from tests.conftest import reports_breaking_schema

    data = real_report(tmp_path)
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "diagnosis.json").write_text(json.dumps(data))
    assert reports_breaking_schema(tmp_path) == []
    data["results"][0]["verdict"] = "fine"
    (tmp_path / "deep" / "bad").mkdir(parents=True)
    (tmp_path / "deep" / "bad" / "diagnosis.json").write_text(json.dumps(data))
    [problem] = reports_breaking_schema(tmp_path)
    assert problem.startswith(str(tmp_path / "deep" / "bad" / "diagnosis.json")) and "results.0.verdict" in problem
    (tmp_path / "deep" / "bad" / "diagnosis.json").unlink()  # else this test's own check fails it
