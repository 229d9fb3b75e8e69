"""The one SparkSession factory: it knows Delta, the jars folder and the local defaults.

Jobs receive the session; logic never creates one. Under ``spark-submit`` (Airflow's
SparkSubmitOperator) the master, jars and Delta settings come from the command line, built by
:func:`submit_conf`, so the same job runs unchanged on local[*] or a cluster.
"""

from __future__ import annotations

import os
from pathlib import Path

from pyspark.sql import SparkSession

from cdp.settings import JARS_DIR

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


def submit_conf() -> dict[str, str]:
    """Spark settings every job needs, whoever launches it (builder or spark-submit)."""
    return {
        **DELTA_CONF,
        # Dates and timestamps are UTC everywhere so that a run's day means the same on every machine.
        "spark.sql.session.timeZone": "UTC",
        # Small local default; on a cluster set CDP_SHUFFLE_PARTITIONS or leave AQE to coalesce.
        "spark.sql.shuffle.partitions": os.environ.get("CDP_SHUFFLE_PARTITIONS", "8"),
        "spark.sql.adaptive.enabled": "true",
        # Schema changes are made on purpose by the jobs (additive evolution), never merged implicitly.
        "spark.databricks.delta.schema.autoMerge.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
    }


def get_session(app_name: str, master: str | None = None, extra: dict[str, str] | None = None) -> SparkSession:
    """Return the session for a job or a test.

    Under spark-submit the JVM already runs with the submit settings; otherwise (tests, the CLI)
    this starts a local one with the Delta jars.
    """
    builder = SparkSession.builder.appName(app_name)
    conf = {**submit_conf(), **(extra or {})}
    if "PYSPARK_GATEWAY_PORT" not in os.environ:  # not under spark-submit: we launch the JVM
        builder = builder.master(master or os.environ.get("CDP_SPARK_MASTER", "local[*]"))
        conf["spark.jars"] = ",".join(delta_jars())
        conf.setdefault("spark.ui.enabled", "false")
        conf.setdefault("spark.driver.memory", os.environ.get("CDP_DRIVER_MEMORY", "4g"))
    for key, value in conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
