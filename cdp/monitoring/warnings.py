"""Warnings: a run that goes on, but that someone should look at.

- **Quarantine rate**: a dataset whose quarantined share of the run date's records (``batch_ledger``: rows
  quarantined / rows read, every landed file of the day) is over ``guardrails.quarantine_warning_factor`` times
  the median share of its previous ``guardrails.quarantine_warning_runs`` run dates, and over
  ``guardrails.quarantine_warning_min_share``; judged once the dataset has 3 previous run dates.
- **Audience size**: an audience whose size (realized + existing members) changed by more than
  ``guardrails.audience_size_change_warning_share`` of its size on the previous run date.

The quality gates (``jobs/check_quality.py``: stage ``ingest`` and ``audiences``) find them and report them to
their Airflow task (:func:`report`), which sends one alert per warning (``cdp_provider.alerts.send_warnings``).
A warning names the dataset or the audience, the numbers and the threshold: counts only, never a record.
"""

from __future__ import annotations

import datetime as dt
import logging
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cdp.job import write_output
from cdp.workspace.models import Guardrails

log = logging.getLogger(__name__)

# The key of the job's output (cdp.job.write_output) the operator sends on the alert channels.
OUTPUT_KEY = "warnings"
# Previous run dates a dataset needs before its quarantine share is judged (a median of one day is noise).
MIN_HISTORY = 3


@dataclass(frozen=True)
class RunWarning:
    """One warning: what it is about (``title``), its numbers (``facts``), for the run date."""

    kind: str
    run_date: dt.date
    title: str
    facts: tuple[tuple[str, str], ...]

    def as_json(self) -> dict[str, object]:
        return {"kind": self.kind, "run_date": self.run_date.isoformat(), "title": self.title,
                "facts": [list(f) for f in self.facts]}


def _percent(share: float) -> str:
    return f"{100 * share:.1f}%"


@dataclass(frozen=True)
class DayCounts:
    """One dataset's landed records on one run date (``batch_ledger``, summed over its files)."""

    run_date: dt.date
    rows_read: int
    rows_quarantined: int

    @property
    def share(self) -> float:
        return self.rows_quarantined / self.rows_read if self.rows_read else 0.0


def quarantine_warnings(history: Mapping[str, Sequence[DayCounts]], run_date: dt.date,
                        guardrails: Guardrails) -> list[RunWarning]:
    """The datasets (by name) whose quarantine share on ``run_date`` is far over their usual one (module doc).

    ``history`` holds each dataset's days up to and including the run date (other days are ignored).
    """
    out: list[RunWarning] = []
    for dataset in sorted(history):
        days = sorted((d for d in history[dataset] if d.run_date <= run_date), key=lambda d: d.run_date)
        today = next((d for d in days if d.run_date == run_date), None)
        previous = [d for d in days if d.run_date < run_date][-guardrails.quarantine_warning_runs:]
        if today is None or not today.rows_read or len(previous) < MIN_HISTORY:
            continue
        median = statistics.median(d.share for d in previous)
        limit = max(guardrails.quarantine_warning_factor * median, guardrails.quarantine_warning_min_share)
        if today.share <= limit:
            continue
        out.append(RunWarning("quarantine_rate", run_date,
                              f"dataset {dataset} quarantined {_percent(today.share)} of its records", (
            ("Dataset", dataset),
            ("Quarantined", f"{today.rows_quarantined} of {today.rows_read} records ({_percent(today.share)})"),
            (f"Median of the previous {len(previous)} run dates", _percent(median)),
            ("Threshold", f"{guardrails.quarantine_warning_factor:g}x the median and over "
                          f"{_percent(guardrails.quarantine_warning_min_share)} "
                          "(guardrails.quarantine_warning_factor, quarantine_warning_min_share)"),
        )))
    return out


@dataclass(frozen=True)
class SizeChange:
    """One audience's size on the previous run date and on the run date."""

    audience_id: str
    previous_size: int
    size: int


def audience_size_warnings(changes: Iterable[SizeChange], run_date: dt.date, previous_day: dt.date,
                           threshold: float) -> list[RunWarning]:
    """The audiences whose size changed by more than ``threshold`` (a share: the guardrail
    ``audience_size_change_warning_share``) since ``previous_day`` (see the module doc).

    An audience without members on the previous day has no relative change and raises none.
    """
    out: list[RunWarning] = []
    for change in sorted(changes, key=lambda c: c.audience_id):
        if change.previous_size <= 0:
            continue
        share = (change.size - change.previous_size) / change.previous_size
        if abs(share) <= threshold:
            continue
        out.append(RunWarning("audience_size", run_date,
                              f"audience {change.audience_id} changed size by {share:+.1%}", (
            ("Audience", change.audience_id),
            ("Size", f"{change.previous_size} on {previous_day.isoformat()}, {change.size} on {run_date.isoformat()}"),
            ("Change", f"{share:+.1%}"),
            ("Threshold", f"{_percent(threshold)} (guardrails.audience_size_change_warning_share)"),
        )))
    return out


def report(warnings: Sequence[RunWarning]) -> None:
    """Log each warning and hand them to the Airflow task (which sends them on the alert channels)."""
    for warning in warnings:
        log.warning("%s: %s", warning.title, "; ".join(f"{label}: {value}" for label, value in warning.facts))
    write_output(OUTPUT_KEY, [w.as_json() for w in warnings])
