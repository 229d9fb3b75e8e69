"""`make bench`: run the benchmarks and write bench/results.md.

    python -m bench [--suites generator,ingest,audiences,identity,export,streaming,daily] [--rows 1000000,10000000]
                    [--profiles 1000000] [--identities 1000000,10000000] [--export-rows 5000000]
                    [--changes 1000000] [--endpoints http,kafka,kinesis] [--persons 5000,1000000] [--work DIR]

Numbers are for this machine (2 cores, 24 GB); Spark runs local[2].
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import re
import sys
from pathlib import Path
from typing import Any

from bench.measure import measure
from cdp.settings import REPO_ROOT

log = logging.getLogger("bench")
SUITES = ("generator", "ingest", "audiences", "identity", "export", "streaming", "daily")


def bench_generator(work: Path, persons: int) -> dict[str, float]:
    from cdp.generator import generate

    out = work / f"gen-{persons}"
    with measure() as m:
        summary = generate(out, profiles=persons, days=1, seed=1, end_date=dt.date(2026, 11, 27))
    records = sum(summary.records.values())
    return {"persons": persons, "records": records, "seconds": round(m.seconds, 1),
            "records_per_s": round(records / m.seconds), "peak_rss_mib": round(m.peak_rss_mib)}


def bench_session(extra: dict[str, str] | None = None) -> Any:
    """The benchmarks' Spark session: local[2], an 8 GB driver, 8 shuffle partitions (plus ``extra``)."""
    from cdp.spark import get_session

    return get_session("cdp-bench", master="local[2]",
                       extra={"spark.driver.memory": "8g", "spark.sql.shuffle.partitions": "8", **(extra or {})})


def machine() -> str:
    """This machine in a few words: cores, CPU model, memory."""
    import psutil

    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    except OSError:
        model = platform.processor()
    return f"{os.cpu_count()} cores {model}, {psutil.virtual_memory().total / 2**30:.0f} GiB".replace("  ", " ")


def read_sections(text: str) -> dict[str, str]:
    """The ``## suite`` sections of an existing results file, by suite, so a run keeps the others."""
    sections: dict[str, str] = {}
    for part in re.split(r"^## ", text, flags=re.MULTILINE)[1:]:
        name, _, body = part.partition("\n")
        sections[name.strip()] = body
    return sections


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--suites", default=",".join(SUITES))
    parser.add_argument("--rows", default="1000000,10000000", help="ingest sizes, in landed rows")
    parser.add_argument("--profiles", default="1000000", help="audience suite sizes, in profiles (10 events each)")
    parser.add_argument("--identities", default="1000000,10000000",
                        help="identity graph sizes, in identities (about 10 minutes at 10M on 2 cores)")
    parser.add_argument("--export-rows", default="5000000", help="export sizes, in members of one audience")
    parser.add_argument("--changes", default="1000000", help="streaming suite: profile changes sent to each endpoint")
    parser.add_argument("--endpoints", default="http,kafka,kinesis", help="streaming suite: endpoints on loopback")
    parser.add_argument("--persons", default="5000,1000000",
                        help="daily suite: persons of the example workspace, each run for two days through the DAG")
    parser.add_argument("--work", default=str(REPO_ROOT / "data" / "bench"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    suites = args.suites.split(",")
    results: dict[str, list[dict[str, Any]]] = {}

    if "generator" in suites:
        results["generator"] = [bench_generator(work, n) for n in (100_000, 1_000_000)]
        log.info("generator: %s", results["generator"])
    if "ingest" in suites:
        from bench.ingest import bench_ingest
        from cdp.workspace.loader import load_workspace

        spark = bench_session()
        ws = load_workspace(REPO_ROOT / "examples" / "retail")
        results["ingest"] = []
        for rows in (int(r) for r in args.rows.split(",")):
            results["ingest"].append(bench_ingest(spark, ws, work, rows))
            log.info("ingest: %s", results["ingest"][-1])

    if "audiences" in suites:
        from bench.audiences import bench_audiences

        spark = bench_session()
        results["audiences"] = []
        for n in (int(x) for x in args.profiles.split(",")):
            results["audiences"] += bench_audiences(spark, work, n)
            log.info("audiences: %s", results["audiences"])
    if "identity" in suites:
        from bench.identity import bench_identity

        # the results come back to pandas for the comparison with scipy
        spark = bench_session({"spark.sql.execution.arrow.pyspark.enabled": "true"})
        spark.sparkContext.setCheckpointDir(str(work / "checkpoints"))
        results["identity"] = [bench_identity(spark, work, int(n)) for n in args.identities.split(",")]
        log.info("identity: %s", results["identity"])

    if "export" in suites:
        from bench.export import bench_export

        spark = bench_session()
        results["export"] = []
        for n in (int(x) for x in args.export_rows.split(",")):
            results["export"] += bench_export(spark, work, n)
        log.info("export: %s", results["export"])

    if "streaming" in suites:
        from bench.streaming import bench_streaming

        spark = bench_session()
        results["streaming"] = []
        for n in (int(x) for x in args.changes.split(",")):
            results["streaming"] += bench_streaming(spark, work, n, args.endpoints.split(","))
        log.info("streaming: %s", results["streaming"])

    if "daily" in suites:
        from bench.daily import bench_daily

        results["daily"] = []
        for n in (int(x) for x in args.persons.split(",")):
            results["daily"] += bench_daily(work, n)
        log.info("daily: %s", results["daily"])

    path = REPO_ROOT / "bench" / "results.md"
    sections = read_sections(path.read_text(encoding="utf-8")) if path.exists() else {}
    stamp = (f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {platform.node()} ({machine()}), "
             f"python {platform.python_version()}")
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    for suite, table in results.items():
        lines = [f"Measured {stamp} with `python -m bench {' '.join(argv or sys.argv[1:])}`; Spark local[2]; "
                 f"load average at the end (1 / 5 / 15 min): {load}.", ""]
        lines += ["| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
        lines += ["| " + " | ".join(str(v) for v in row.values()) + " |" for row in table]
        sections[suite] = "\n".join(lines)
    text = "# Benchmarks\n\nEach section is rewritten by the last run of its suite (`make bench`).\n\n" + "\n\n".join(
        f"## {suite}\n\n{body.strip()}" for suite, body in sections.items()) + "\n"
    path.write_text(text, encoding="utf-8")
    (work / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
