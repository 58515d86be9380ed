"""The README: short, undated, its links and picture present, and its Python example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.scheduling.test_choose import verdicts
from threadprobe import records, report
from threadprobe.harness import fingerprint

ROOT = Path(__file__).resolve().parents[1]


README = (ROOT / "README.md").read_text()


def test_the_readme_is_short_and_undated() -> None:
    assert len(README.splitlines()) <= 150
    months = "January|February|March|April|May|June|July|August|September|October|November|December"
    assert not re.search(rf"\b(19|20)\d\d-\d\d\b|\b({months}) (19|20)\d\d\b", README)
    assert not re.search(r"last round|earlier round|this round|previous round|\bround \d", README, re.I)


def test_the_readme_links_and_picture_exist() -> None:
    targets = re.findall(r"\]\(([^)#]+)\)", README)
    assert "docs/_static/report.png" in targets
    missing = [t for t in targets if "://" not in t and not (ROOT / t).exists()]
    assert not missing, missing


def test_the_readme_python_example_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """In a folder whose reports/diagnosis.json (this machine's packages, the probe safe) is what
    the example reads, so that it needs no quick diagnosis of its own."""
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert len(blocks) == 1
    fp = fingerprint.light()
    diagnosis = records.Diagnosis("2001-01-01T00:00:00+00:00", "0", {"cores": 2}, fp, tuple(verdicts()))
    report.write(diagnosis, tmp_path / "reports")
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], "README.md", "exec"), {"__name__": "readme"})
    printed = capsys.readouterr().out
    assert "air_temperature" in printed and any(s in printed for s in ("threads", "synchronous", "processes"))
