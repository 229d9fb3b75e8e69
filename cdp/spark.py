"""The one SparkSession factory: it knows Delta, the jars folder and the local defaults.

Jobs receive the session; logic never creates one. Under ``spark-submit`` (Airflow's
SparkSubmitOperator) the master, jars and Delta settings come from the command line, built from
:mod:`cdp.spark_conf`, so the same job runs unchanged on local[*] or a cluster.
"""

from __future__ import annotations

import os

from pyspark.sql import SparkSession

from cdp.spark_conf import delta_jars, submit_conf


def get_session(app_name: str, master: str | None = None, extra: dict[str, str] | None = None) -> SparkSession:
    """Return the session for a job or a test.

    Under spark-submit the JVM already runs with the submit settings; otherwise (tests, the CLI)
    this starts a local one with the Delta jars.
    """
    builder = SparkSession.builder.appName(app_name)
    conf = {**submit_conf(), **(extra or {})}
    if "PYSPARK_GATEWAY_PORT" not in os.environ:  # not under spark-submit: we launch the JVM
        # Python UDF workers take their interpreter from this variable (read by the Python-side
        # SparkContext), not from spark.pyspark.python: without it they run `python3` from PATH,
        # which lacks the venv's pandas and pyarrow.
        os.environ.setdefault("PYSPARK_PYTHON", conf["spark.pyspark.python"])
        builder = builder.master(master or os.environ.get("CDP_SPARK_MASTER", "local[*]"))
        conf["spark.jars"] = ",".join(delta_jars())
        conf.setdefault("spark.ui.enabled", "false")
        conf.setdefault("spark.driver.memory", os.environ.get("CDP_DRIVER_MEMORY", "4g"))
    for key, value in conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
