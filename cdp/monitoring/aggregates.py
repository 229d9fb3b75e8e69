"""The small per-run aggregates of the Activation dashboard, computed by the jobs from what they just wrote.

Each function takes the run's (already computed) frames or counts and returns the few rows (tuples in the order of
the schema declared in :mod:`cdp.lake`: ``AUDIENCE_SIZES``, ``IDENTITY_SUMMARY``, ``QUARANTINE_SUMMARY``) that the
jobs write with delta-rs (:mod:`cdp.small_tables`). Nothing here reads or writes tables.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from cdp.monitoring.masking import mask_raw

Row = tuple[object, ...]

SAMPLES_PER_REASON = 3


def audience_sizes(run_date: dt.date, audience_ids: Iterable[str], counts: Mapping[tuple[str, str], int],
                   exited_today: Mapping[str, int]) -> list[Row]:
    """One row per audience: ``counts`` is (audience id, status) -> memberships of the run date's slice,
    ``exited_today`` audience id -> memberships that became exited on the run date."""
    rows: list[Row] = []
    for audience_id in audience_ids:
        realized = int(counts.get((audience_id, "realized"), 0))
        existing = int(counts.get((audience_id, "existing"), 0))
        rows.append((run_date, audience_id, realized + existing, realized, existing,
                     int(exited_today.get(audience_id, 0))))
    return rows


def identity_summary(run_date: dt.date, sizes: DataFrame, identities: int, links: int,
                     metrics: Mapping[str, int]) -> Row:
    """The run date's row: ``sizes`` has one row per profile with ``count`` (its identities); the drop and
    merge counts come from the job's metrics (``links_dropped``, ``identities_dropped``, ...)."""
    distribution = {int(r["count"]): int(r["profiles"])
                    for r in sizes.groupBy("count").agg(F.count(F.lit(1)).alias("profiles")).collect()}
    row = (run_date, sum(distribution.values()), identities, links, distribution,
           *(int(metrics.get(k, 0)) for k in ("links_dropped", "identities_dropped", "links_expired",
                                               "profile_merges", "profile_splits")))
    return row


def quarantine_summary(quarantine: DataFrame) -> list[Row]:
    """Per (dataset, batch_date, code, field) of a quarantine slice: the records and up to
    :data:`SAMPLES_PER_REASON` masked raw records (those of the lowest source file and row number).

    Only the samples reach the driver (a few per reason), where they are masked before anything is written.
    """
    reasons = (quarantine.select("dataset", "batch_date", "source_file", "row_number", "raw",
                                 F.explode("reasons").alias("r"))
               .select("dataset", "batch_date", "source_file", "row_number", "raw", F.col("r.code").alias("code"),
                       F.coalesce(F.col("r.field"), F.lit("")).alias("field")))
    keys = ["dataset", "batch_date", "code", "field"]
    counted = {tuple(r[k] for k in keys): int(r["records"])
               for r in reasons.groupBy(*keys).agg(F.count(F.lit(1)).alias("records")).collect()}
    order = Window.partitionBy(*keys).orderBy(F.col("source_file"), F.col("row_number").asc_nulls_first())
    sampled = (reasons.withColumn("n", F.row_number().over(order)).where(F.col("n") <= SAMPLES_PER_REASON)
               .select(*keys, "n", "raw").collect())
    samples: dict[tuple[object, ...], list[tuple[int, str]]] = {}
    for r in sampled:
        samples.setdefault(tuple(r[k] for k in keys), []).append((int(r["n"]), mask_raw(r["raw"] or "")))
    return [(*key, count, [text for _, text in sorted(samples.get(key, []))])
            for key, count in sorted(counted.items(), key=lambda kv: tuple(str(v) for v in kv[0]))]
