"""Probes of cf-units and the udunits2 C library behind it.

udunits2 keeps its error status in a global (``ut_get_status``), so a failed parse in one
thread can report the status of another thread's successful parse. Every probe compares each
result *and each error message* with the serial run.

Found while writing these probes: even in one thread, the status in cf-units' error message is
the status of the *previous* udunits call ("[UT_SUCCESS] Failed to parse" after a valid parse,
"[UT_UNKNOWN]" after a failed one). So every parse here first parses a valid unit: within one
thread the message is then always the same, and another thread's call in between shows.
"""

from __future__ import annotations

from threadprobe.probe import Probe
from threadprobe.probes._common import LIBRARY_RACE_SECONDS

VALID = (
    "m s-1", "km h-1", "knot", "m/s", "K", "degC", "degF", "kelvin", "Pa", "hPa", "mbar", "kg m-2 s-1",
    "W m-2", "1", "percent", "degrees", "radians", "kg kg-1", "mm day-1", "J kg-1 K-1",
    "hours since 1970-01-01 00:00:00", "days since 1850-01-01", "seconds since 2000-01-01T00:00:00Z",
    "m2 s-2", "g/kg", "ppm", "s-1", "N m-2", "cm", "kt",
)
INVALID = ("not_a_unit", "m s-1 xx", "@@", "days since", "kg ** m", "metres per fortnight!", "1e", "s-1-1")
CONVERSIONS = (
    ("m s-1", "km h-1"), ("K", "degC"), ("degC", "degF"), ("Pa", "hPa"), ("knot", "m s-1"),
    ("mm day-1", "m s-1"), ("radians", "degrees"), ("hPa", "mbar"),
)
CALENDARS = ("standard", "gregorian", "proleptic_gregorian", "noleap", "360_day", "julian", "all_leap")


def parse(text: str) -> tuple:
    """A unit's identity, or the error it raised (type and message, both must match serial)."""
    import cf_units

    cf_units.Unit("m")  # a known previous call: see the module docstring
    try:
        unit = cf_units.Unit(text)
    except Exception as exc:  # the error path is under test too: the exception's type and message
        return ("error", exc)
    return ("ok", str(unit), unit.definition, unit.is_time_reference(), unit.is_dimensionless())


class _CfUnits(Probe):
    dependency = "cf-units"
    preload = ("numpy", "cf_units")
    iterations = 1000  # tasks take ~10 microseconds: many of them give a race its chances
    race_seconds = LIBRARY_RACE_SECONDS


class Parse(_CfUnits):
    """Unit(...) parsing of many valid unit strings."""

    name = "cf_units.parse"

    def task(self, ctx, i):
        return parse(VALID[i % len(VALID)])


class ParseErrorsMixed(_CfUnits):
    """Invalid unit strings parsed concurrently with valid ones: every error message must match."""

    name = "cf_units.parse_errors_mixed"
    iterations = 400
    BATCH = 16  # the race window is a few instructions wide: each task gives it 16 chances
    reproducer = f'''
import cf_units

VALID = {VALID!r}
INVALID = {INVALID!r}


def setup(work):
    return None


def task(ctx, i):  # invalid units parsed among valid ones: each message must be what serial gives
    out = []
    for j in range(i * 16, i * 16 + 16):
        cf_units.Unit("m")  # a known previous call: the message carries the previous call's status
        try:
            out.append(str(cf_units.Unit(INVALID[(j // 2) % len(INVALID)] if j % 2 else VALID[(j // 2) % len(VALID)])))
        except ValueError as exc:
            out.append(str(exc))
    return out
'''
    reproducer_iterations = 2000

    def task(self, ctx, i):
        out = []
        for k in range(self.BATCH):
            j = i * self.BATCH + k
            out.append(parse(INVALID[(j // 2) % len(INVALID)] if j % 2 else VALID[(j // 2) % len(VALID)]))
        return tuple(out)


class Convert(_CfUnits):
    """Unit.convert of arrays between convertible units."""

    name = "cf_units.convert"

    def task(self, ctx, i):
        import cf_units
        import numpy as np

        src, dst = CONVERSIONS[i % len(CONVERSIONS)]
        data = np.linspace(-50, 50, 2000) + i
        return cf_units.Unit(src).convert(data, cf_units.Unit(dst))


class Num2DateDate2Num(_CfUnits):
    """num2date and date2num round trips in every CF calendar."""

    name = "cf_units.num2date_date2num"
    iterations = 100

    def task(self, ctx, i):
        import cf_units
        import numpy as np

        unit = cf_units.Unit("hours since 1970-01-01 00:00:00", calendar=CALENDARS[i % len(CALENDARS)])
        nums = np.arange(0, 24 * 400, 61.0) + i
        dates = unit.num2date(nums)
        return (tuple(str(d) for d in dates[::7]), unit.date2num(dates))
