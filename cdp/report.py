"""The run report: what one daily run did, from the run_metrics and export_log tables."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from cdp.delta_io import read_table
from cdp.lake import DESTINATION_METRICS, EXPORT_LEDGER, EXPORT_PREVIEWS, RUN_METRICS, Lake


def collect_report(spark: SparkSession, lake: Lake, run_date: dt.date) -> dict[str, object]:
    """Gather the run's counts as a plain dict (step -> scope -> metric -> value) plus the exported files."""
    metrics: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    rows = read_table(spark, lake.path(RUN_METRICS), RUN_METRICS.schema).where(
        F.col("run_date") == F.lit(run_date)).collect()
    for row in rows:
        metrics[row["step"]][row["scope"]][row["metric"]] = int(row["value"])
    files = [row.asDict() for row in read_table(spark, lake.path(EXPORT_LEDGER), EXPORT_LEDGER.schema).where(
        F.col("run_date") == F.lit(run_date)).orderBy("destination", "file_name").collect()]
    destinations = [row.asDict() for row in read_table(spark, lake.path(DESTINATION_METRICS),
                                                       DESTINATION_METRICS.schema).where(
        F.col("run_date") == F.lit(run_date)).orderBy("destination").collect()]
    previews = [row.asDict(recursive=True) for row in read_table(spark, lake.path(EXPORT_PREVIEWS),
                                                                 EXPORT_PREVIEWS.schema).where(
        F.col("run_date") == F.lit(run_date)).orderBy("destination").collect()]
    return {"run_date": run_date.isoformat(), "metrics": {k: dict(v) for k, v in metrics.items()}, "files": files,
            "destinations": destinations, "previews": previews}


def format_report(report: dict[str, object]) -> str:
    """A short human summary of the run."""
    metrics = report["metrics"]
    assert isinstance(metrics, dict)
    files = report["files"]
    assert isinstance(files, list)
    lines = [f"Daily activation for {report['run_date']}", ""]
    validate, ingest = metrics.get("validate", {}), metrics.get("ingest", {})
    if validate:
        lines.append(f"{'dataset':<20}{'read':>10}{'quarantined':>13}{'valid':>10}{'inserted':>10}{'updated':>10}")
        for dataset in sorted(validate):
            v, i = validate[dataset], ingest.get(dataset, {})
            lines.append(f"{dataset:<20}{v.get('rows_read', 0):>10}{v.get('rows_quarantined', 0):>13}"
                         f"{v.get('rows_valid', 0):>10}{i.get('rows_inserted', 0):>10}{i.get('rows_updated', 0):>10}")
        lines.append("")
    resolve = metrics.get("resolve_identities", {}).get("all", {})
    if resolve:
        lines.append(f"identities {resolve.get('identities', 0)}, links {resolve.get('links', 0)}, "
                     f"profiles {resolve.get('profiles', 0)} "
                     f"(largest holds {resolve.get('max_identities_per_profile', 0)} identities)")
    built = metrics.get("build_profiles", {}).get("all", {})
    if built:
        lines.append(f"profiles built {built.get('profiles', 0)}, "
                     f"with attributes {built.get('profiles_with_attributes', 0)}")
    audiences = metrics.get("evaluate_audiences", {}).get("all", {})
    event_cap, identity_cap = audiences.get("excluded.event_cap", 0), audiences.get("excluded.identity_cap", 0)
    if event_cap or identity_cap:
        lines.append(f"left out of audience evaluation: {event_cap} profile(s) over the event cap "
                     f"(max_events_per_profile), {identity_cap} over the identity cap (max_identities_per_graph)")
    ids = sorted({name.removesuffix(".size") for name in audiences if name.endswith(".size")})
    if ids:
        lines += ["", f"{'audience':<24}{'size':>8}{'realized':>10}{'existing':>10}{'exited':>8}"]
        for audience_id in ids:
            lines.append(f"{audience_id:<24}{audiences.get(f'{audience_id}.size', 0):>8}"
                         f"{audiences.get(f'{audience_id}.realized', 0):>10}"
                         f"{audiences.get(f'{audience_id}.existing', 0):>10}"
                         f"{audiences.get(f'{audience_id}.exited', 0):>8}")
    destinations = report.get("destinations") or []
    assert isinstance(destinations, list)
    if destinations:
        lines += ["", f"{'destination':<22}{'type':<11}{'mode':<12}{'received':>9}{'activated':>10}{'excluded':>9}"
                      f"{'failed':>7}{'files':>6}{'bytes':>10}  status"]
        for d in destinations:
            excluded = sum((d["excluded"] or {}).values())
            lines.append(f"{d['destination']:<22}{d['type']:<11}{d['mode']:<12}{d['received']:>9}{d['activated']:>10}"
                         f"{excluded:>9}{d['failed']:>7}{d['files']:>6}{d['bytes']:>10}  {d['status']}")
            reasons = ", ".join(f"{k} {v}" for k, v in sorted((d["excluded"] or {}).items()) if v)
            if reasons:
                lines.append(f"{'':<22}excluded: {reasons}")
            failures = ", ".join(f"{k} {v}" for k, v in sorted((d.get("failed_by") or {}).items()) if v)
            if failures:
                lines.append(f"{'':<22}failed: {failures}")
            if d.get("latency_p50_ms") is not None:
                lines.append(f"{'':<22}latency to acknowledgement: p50 {d['latency_p50_ms']} ms, "
                             f"p95 {d['latency_p95_ms']} ms")
            if d.get("error"):
                lines.append(f"{'':<22}error: {d['error']}")
    if files:
        lines += ["", "files:"]
        for f in files:
            lines.append(f"  {f['destination']}: {f['file_name']} ({f['kind']}, {f['rows']} rows, {f['bytes']} bytes, "
                         f"{f['status']}) -> {f['location']}")
    previews = report.get("previews") or []
    assert isinstance(previews, list)
    if previews:
        lines += ["", "dry run (nothing delivered): what each destination would receive",
                  f"{'destination':<22}{'type':<11}{'mode':<12}{'received':>9}{'activated':>10}{'excluded':>9}"
                  f"{'failed':>7}{'files':>6}{'rows':>8}{'bytes':>10}{'messages':>9}  run"]
        for p in previews:
            excluded = sum((p["excluded"] or {}).values())
            lines.append(f"{p['destination']:<22}{p['type']:<11}{p['mode']:<12}{p['received']:>9}{p['activated']:>10}"
                         f"{excluded:>9}{p['failed']:>7}{p['files']:>6}{p['rows']:>8}{p['bytes']:>10}"
                         f"{p['messages']:>9}  {p['run_id']}")
            for f in p["file_list"] or []:
                again = ", already delivered: not sent again" if f["already_delivered"] else ""
                lines.append(f"  {f['file_name']} ({f['kind']}, {f['rows']} rows, {f['bytes']} bytes{again})")
            lines.append(f"  preview: {p['location']}")
    return "\n".join(lines)
