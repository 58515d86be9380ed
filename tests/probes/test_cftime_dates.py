"""cftime probes: deterministic, and correct in a calendar we can check by hand."""

from threadprobe.probes import cftime_dates
from threadprobe.probe import digest


def test_num2date_round_trips_and_is_deterministic():
    probe = cftime_dates.Num2Date()
    a = digest(probe.task(None, 3))
    probe.task(None, 4)
    assert digest(probe.task(None, 3)) == a
    isos, nums = probe.task(None, 0)
    assert isos[0].startswith("1970-01-01")


def test_360_day_arithmetic():
    result = cftime_dates.DateArithmetic().task(None, 3)  # calendar index 3 is 360_day
    assert cftime_dates.CALENDARS[3] == "360_day"
    iso, seconds, dayofyr, later = result[1]
    assert seconds == 17 * 86400 + 3600 and later
