"""The Airflow assets the DAGs exchange: declared once, imported by the DAG files (nothing here runs at parse time).

``AUDIENCE_MEMBERSHIP``: updated by ``evaluate_audiences`` of ``cdp_daily`` each time it commits a run date's
membership snapshot. Its events carry, in ``extra``, ``run_date`` (YYYY-MM-DD) and ``membership_version`` (the
Delta version of ``audience_membership`` that holds the snapshot; null when the job could not report it, e.g. a
driver on a cluster's machine). The destinations on their own cadence (``cdp_activate__*``) are scheduled on it.
"""

from __future__ import annotations

from airflow.sdk import Asset

# An "x-" scheme: Airflow keeps the URI as it is (the lake's location differs per deployment; the name is the key).
AUDIENCE_MEMBERSHIP = Asset(name="cdp_audience_membership", uri="x-cdp://lake/audience_membership", group="cdp")
# The keys of an AUDIENCE_MEMBERSHIP event's extra.
RUN_DATE = "run_date"
MEMBERSHIP_VERSION = "membership_version"
