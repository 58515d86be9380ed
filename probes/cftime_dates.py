"""Probes of cftime: num2date and date arithmetic in every CF calendar, under threads."""

from __future__ import annotations

from threadprobe.probe import Probe
from threadprobe.probes._common import LIBRARY_RACE_SECONDS

CALENDARS = ("standard", "proleptic_gregorian", "noleap", "360_day", "julian", "all_leap", "366_day")
UNITS = ("hours since 1970-01-01 00:00:00", "days since 1850-01-01", "minutes since 2000-02-28 12:00")


class _Cftime(Probe):
    dependency = "cftime"
    preload = ("numpy", "cftime")
    iterations = 100
    race_seconds = LIBRARY_RACE_SECONDS


class Num2Date(_Cftime):
    """cftime.num2date and date2num of a few thousand times, many calendars and units."""

    name = "cftime.num2date"

    def task(self, ctx, i):
        import cftime
        import numpy as np

        calendar = CALENDARS[i % len(CALENDARS)]
        units = UNITS[(i // len(CALENDARS)) % len(UNITS)]
        nums = np.arange(0, 5000, 29.5) + i
        dates = cftime.num2date(nums, units, calendar=calendar)
        return (tuple(d.isoformat() for d in dates[::11]), cftime.date2num(dates, units, calendar=calendar))


class DateArithmetic(_Cftime):
    """Adding timedeltas, differences and comparisons of cftime datetimes."""

    name = "cftime.date_arithmetic"

    def task(self, ctx, i):
        import datetime

        import cftime

        calendar = CALENDARS[i % len(CALENDARS)]
        start = cftime.datetime(1900 + i % 200, 1 + i % 12, 1 + i % 28, i % 24, calendar=calendar)
        out = []
        for k in range(50):
            later = start + datetime.timedelta(days=k * 17, hours=k)
            out.append((later.isoformat(), (later - start).total_seconds(), later.dayofyr, later > start))
        return tuple(out)
