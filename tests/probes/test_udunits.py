"""cf-units probes: results and error messages depend on i alone within one thread."""

import numpy as np
import pytest

from threadprobe.probes import udunits
from threadprobe.probe import digest


def test_parse_results_are_deterministic_whatever_came_before():
    probe = udunits.ParseErrorsMixed()
    before = [digest(probe.task(None, i)) for i in range(40)]
    after = [digest(probe.task(None, i)) for i in reversed(range(40))][::-1]
    assert before == after


def test_invalid_strings_raise_and_the_exception_is_the_result():
    kind, exc = udunits.parse("@@")
    assert kind == "error" and isinstance(exc, ValueError) and "Failed to parse" in str(exc)
    # Its message is part of the full digest only: a differing message is message-only corruption.
    assert digest(udunits.parse("@@"), messages=False) == digest(("error", ValueError("other")), messages=False)


@pytest.mark.environment  # the installed cf-units' udunits2: its status is a global
def test_the_stale_status_this_probe_works_around_is_real():
    import cf_units

    cf_units.Unit("m")
    after_valid = str(udunits.parse("@@")[1])
    try:
        cf_units.Unit("not_a_unit")
    except ValueError:
        pass
    try:
        cf_units.Unit("@@")
    except ValueError as exc:
        after_invalid = str(exc)
    assert after_valid != after_invalid  # the message reports the previous call's status


def test_convert_and_dates_are_correct():
    got = udunits.Convert().task(None, 1)  # K -> degC
    assert np.allclose(got, np.linspace(-50, 50, 2000) + 1 - 273.15)
    dates, nums = udunits.Num2DateDate2Num().task(None, 0)
    assert np.allclose(nums, np.arange(0, 24 * 400, 61.0))
