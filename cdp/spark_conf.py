"""Spark settings every job needs, without importing pyspark (the DAG's operators use these).

``cdp.spark`` builds sessions from them; the Airflow operator passes them to spark-submit.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cdp.settings import JARS_DIR

LOG4J2_CONFIG = Path(__file__).resolve().parent / "spark-log4j2.properties"

DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


def delta_jars() -> list[str]:
    """The Delta jars resolved by ``make setup`` (``scripts/fetch_jars.sh``), so runs start offline."""
    jars = sorted(str(p) for p in Path(JARS_DIR).glob("*.jar"))
    if not jars:
        raise FileNotFoundError(f"no jars in {JARS_DIR}: run `make setup` to resolve the Delta jars")
    return jars


def session_conf() -> dict[str, str]:
    """The settings of :func:`submit_conf` that a session may set for itself (SQL and Delta confs).

    A Spark Connect client sets these on its own server-side session: they last as long as the job.
    """
    return {
        # Dates and timestamps are UTC everywhere so that a run's day means the same on every machine.
        "spark.sql.session.timeZone": "UTC",
        # Small local default; on a cluster set CDP_SHUFFLE_PARTITIONS or leave AQE to coalesce.
        "spark.sql.shuffle.partitions": os.environ.get("CDP_SHUFFLE_PARTITIONS", "8"),
        "spark.sql.adaptive.enabled": "true",
        # Delta rebuilds a table's state from its log with this many tasks (default 50) before every read,
        # write and MERGE; our logs are small, and 50 tasks cost seconds each time on a few cores.
        "spark.databricks.delta.snapshotPartitions": os.environ.get("CDP_DELTA_SNAPSHOT_PARTITIONS", "2"),
        # Schema changes are made on purpose by the jobs (additive evolution), never merged implicitly.
        "spark.databricks.delta.schema.autoMerge.enabled": "false",
        # Plans over several cached frames print each cache's plan again: bound the text the UI keeps.
        "spark.sql.maxPlanStringLength": "1048576",
    }


def submit_conf() -> dict[str, str]:
    """Spark settings every job needs, whoever launches it (builder or spark-submit)."""
    return {
        **DELTA_CONF,
        **session_conf(),
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile=file:{LOG4J2_CONFIG}",
        # Python workers must run the interpreter that has pyspark and cdp installed (the venv's),
        # not whatever `python3` comes first on PATH. On a cluster, set PYSPARK_PYTHON to its path there.
        "spark.pyspark.python": os.environ.get("PYSPARK_PYTHON", sys.executable),
    }
