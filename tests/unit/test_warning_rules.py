"""Which numbers make a warning: quarantine rates against the dataset's own median, audience size changes, and
the cadences a destination may declare."""

from __future__ import annotations

import datetime as dt

import pytest

from cdp.monitoring.warnings import DayCounts, SizeChange, audience_size_warnings, quarantine_warnings
from cdp.workspace.cadence import CadenceError, every_hours, parse_cadence
from cdp.workspace.models import Guardrails

D = dt.date(2026, 11, 27)


def days(*counts: tuple[int, int], last: dt.date = D) -> list[DayCounts]:
    """DayCounts for consecutive days ending on ``last``, oldest first."""
    return [DayCounts(last - dt.timedelta(days=len(counts) - 1 - i), read, bad) for i, (read, bad) in enumerate(counts)]


def titles(history: dict[str, list[DayCounts]], guardrails: Guardrails | None = None) -> list[str]:
    return [w.title for w in quarantine_warnings(history, D, guardrails or Guardrails())]


def test_a_rate_over_factor_times_the_median() -> None:
    # median of 2%, 1%, 3% is 2%: 6% is not over 3x, 6.1% is.
    assert titles({"crm": days((100, 2), (100, 1), (100, 3), (1000, 60))}) == []
    assert titles({"crm": days((100, 2), (100, 1), (100, 3), (1000, 61))}) == [
        "dataset crm quarantined 6.1% of its records"]


def test_a_median_of_zero_needs_the_minimum_share() -> None:
    clean = [(100, 0)] * 5
    assert titles({"web": days(*clean, (1000, 10))}) == []  # 1.0%: not over the 1% floor
    assert titles({"web": days(*clean, (1000, 11))}) == ["dataset web quarantined 1.1% of its records"]
    assert titles({"web": days(*clean, (1000, 11))}, Guardrails(quarantine_warning_min_share=0.05)) == []


def test_only_the_last_runs_count_and_three_are_needed() -> None:
    # Eight bad days long ago, then seven clean ones: the median of the last 7 is 0.
    history = days(*([(100, 50)] * 8), *([(100, 0)] * 7), (100, 5))
    assert titles({"crm": history}) == ["dataset crm quarantined 5.0% of its records"]
    [warning] = quarantine_warnings({"crm": history}, D, Guardrails())
    assert warning.facts[2] == ("Median of the previous 7 run dates", "0.0%")
    assert titles({"crm": days((100, 0), (100, 0), (100, 50))}) == []  # two previous days: not judged
    assert titles({"crm": days((100, 0), (100, 0), (100, 0), (100, 50), last=D - dt.timedelta(days=1))}) == []
    assert titles({"crm": days((100, 0), (100, 0), (100, 0), (0, 0))}) == []  # nothing read today


def test_audience_size_changes_over_the_share() -> None:
    changes = [SizeChange("grew", 10, 16), SizeChange("steady", 10, 15), SizeChange("emptied", 4, 0),
               SizeChange("new", 0, 100)]
    warnings = audience_size_warnings(changes, D, D - dt.timedelta(days=1), 0.5)
    assert [w.title for w in warnings] == ["audience emptied changed size by -100.0%",
                                           "audience grew changed size by +60.0%"]
    assert warnings[1].facts == (("Audience", "grew"), ("Size", "10 on 2026-11-26, 16 on 2026-11-27"),
                                 ("Change", "+60.0%"),
                                 ("Threshold", "50.0% (guardrails.audience_size_change_warning_share)"))


@pytest.mark.parametrize(("value", "cadence", "hours"), [
    ("every 3h", "every 3h", 3), ("every 12 h", "every 12h", 12), ("  every  8h ", "every 8h", 8),
    ("after_audience_evaluation", "after_audience_evaluation", None), ("daily", "daily", None)])
def test_cadences(value: str, cadence: str, hours: int | None) -> None:
    assert parse_cadence(value) == cadence
    assert every_hours(cadence) == hours


@pytest.mark.parametrize("value", ["every 4h", "hourly", 6, "EVERY 6H", ""])
def test_not_a_cadence(value: object) -> None:
    with pytest.raises(CadenceError, match=f"unknown schedule {value!r} \\(one of: every 3h, every 6h, every 8h, "
                                           "every 12h, after_audience_evaluation, daily;"):
        parse_cadence(value)
