"""Which membership snapshot a run of a ``cdp_activate__<destination>`` DAG activates (``dags/cdp_activate.py``).

A run started by an asset event of ``AUDIENCE_MEMBERSHIP`` (``evaluate_audiences`` committed a run date)
activates the run date of the newest of its triggering events; a run started by its timetable (``every Nh``) or
by hand activates the run date of the newest event the asset ever had. The export itself is the daily run's
(``jobs/export.py`` for that run date): its ledgers make it idempotent, so a run whose snapshot was already
delivered sends nothing, and one after a destination outage sends only what is missing.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from cdp_provider.assets import AUDIENCE_MEMBERSHIP, MEMBERSHIP_VERSION, RUN_DATE

log = logging.getLogger(__name__)


def _newest(events: Sequence[Any]) -> Any:
    return max(events, key=lambda e: e.timestamp)


def membership_to_activate(context: Mapping[str, Any]) -> dict[str, Any]:
    """``{"run_date", "membership_version", "source_run_id", "trigger"}`` of the snapshot this run activates.

    Skips the run (nothing to activate) when the asset has had no event yet; fails without retry when the
    event's extra holds no valid run date (an event created by hand, e.g. in the UI, without one).
    """
    triggering = list(context["triggering_asset_events"].get(AUDIENCE_MEMBERSHIP, []))
    if triggering:
        event, trigger = _newest(triggering), "asset event"
    else:
        latest = list(context["inlet_events"][AUDIENCE_MEMBERSHIP].ascending(False).limit(1))
        if not latest:
            raise AirflowSkipException(
                f"asset {AUDIENCE_MEMBERSHIP.name} has no event yet: no audience evaluation to activate (run "
                "cdp_daily first; its evaluate_audiences task updates the asset)")
        event, trigger = latest[0], "latest asset event"
    extra = dict(event.extra or {})
    try:
        run_date = dt.date.fromisoformat(str(extra.get(RUN_DATE)))
    except ValueError:
        raise AirflowFailException(
            f"asset {AUDIENCE_MEMBERSHIP.name}: the event of {event.timestamp} has no valid '{RUN_DATE}' in its extra "
            f"({extra!r}); events come from evaluate_audiences of cdp_daily, or give one with "
            f'{{"{RUN_DATE}": "YYYY-MM-DD"}}') from None
    version = extra.get(MEMBERSHIP_VERSION)
    chosen = {RUN_DATE: run_date.isoformat(), MEMBERSHIP_VERSION: version,
              "source_run_id": getattr(event, "source_run_id", None), "trigger": trigger}
    log.info("activating run date %s (audience_membership version %s) from the %s of %s (run %s)",
             run_date, version, trigger, event.timestamp, chosen["source_run_id"])
    return chosen
