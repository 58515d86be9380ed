"""report-bug: an issue body with what a maintainer asks first, from the diagnosis alone."""

import pytest

from threadprobe.report import bugreport
from threadprobe.records.errors import UsageError
from threadprobe.records import Diagnosis, Evidence, Remedy, RemedyKind, Result, Safety


def result(probe, mode, workers, verdict, remedy=None, native=None):
    failed = 0 if verdict == "safe" else 3
    ev = () if verdict == "safe" else (Evidence(kind=verdict, trial=0, summary="worker 0 died by SIGSEGV",
                                                signal="SIGSEGV", traceback="tb", native=native),)
    return Result(probe=probe, dependency="netCDF4", mode=mode, workers=workers,
                  processes=1 if mode != "processes" else workers, threads=workers if mode == "threads" else 1,
                  trials=4, verdict=verdict, remedy=remedy,
                  safety=Safety({"ok": 4 - failed, "crash": failed, "corrupt": 0, "error": 0, "hang": 0},
                                0.53 if verdict == "safe" else 1.0, ev))


PROBE = "netcdf4.read_shared_dataset.zlib"
FINGERPRINT = {
    "python": {"version": "3.11.2", "executable": "/usr/bin/python3.11", "gil_enabled": True},
    "platform": "Linux", "cpu_count": 2,
    "packages": {"netCDF4": {"version": "1.6.2", "distribution": "netCDF4"}, "numpy": {"version": "1.24.2"}},
    "libraries": [{"path": "/usr/lib/libnetcdf.so.19", "family": "libnetcdf", "version": "4.9.0", "sha256": "a" * 64},
                  {"path": "/usr/lib/libhdf5_serial.so.103", "family": "libhdf5", "version": "1.10.8",
                   "sha256": "b" * 64, "threadsafe": True}],
}
DIAGNOSIS = Diagnosis(
    created="2026-11-29T00:00:00+00:00", threadprobe="0.2", config={"iterations": {PROBE: 100}},
    fingerprint=FINGERPRINT, interpreter="/usr/bin/python3.11",
    results=(result(PROBE, "serial", 1, "safe"), result(PROBE, "threads", 2, "crash", native="#0 add_to_NCList"),
             result(PROBE, "processes", 2, "safe"), result("cftime.num2date", "threads", 2, "safe")),
    remedies=(result(PROBE, "threads", 2, "safe", remedy=Remedy(RemedyKind.GLOBAL_LOCK)),),
)


def test_the_issue_body_has_builds_counts_frames_remedy_and_a_plain_reproducer():
    text = bugreport.markdown(DIAGNOSIS, PROBE)
    assert text.startswith("# netCDF4: crash under 2 threads")
    assert "| threads 2 | crash | 3 of 4 |" in text and "| processes 2 | safe | 0 of 4 | < 53% |" in text
    assert "libnetcdf 4.9.0" in text and "libhdf5 1.10.8 (thread-safe)" in text and "Python 3.11.2" in text
    assert "#0 add_to_NCList" in text
    assert "one global lock around every task: safe" in text
    code = text.split("```python")[1].split("```")[0]
    assert "import netCDF4" in code and "threadprobe" not in code and "exec(" not in code
    compile(code, "repro.py", "exec")


@pytest.mark.parametrize("probe, message", [("cftime.num2date", "not unsafe"), ("no.such", "not in this diagnosis")])
def test_a_probe_that_is_not_unsafe_gets_a_one_line_refusal(probe, message):
    with pytest.raises(UsageError, match=message):
        bugreport.markdown(DIAGNOSIS, probe)
