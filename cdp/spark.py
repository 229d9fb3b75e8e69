"""The one SparkSession factory: it knows Delta, the jars folder and the local defaults.

Jobs receive the session; logic never creates one. Three ways a session comes about:

- ``CDP_SPARK_REMOTE`` is set (``sc://127.0.0.1:15002``: the operator sets it in connect mode, from the
  ``spark_default`` connection): a Spark Connect client of a long-lived server (:mod:`cdp.spark_connect`).
  The server already runs with the Delta extensions and jars; the per-run settings (shuffle partitions, time
  zone, Delta's snapshot partitions...) are this client's session confs, gone when it stops.
- under ``spark-submit`` (the operator in submit mode): the master, jars and Delta settings come from the
  command line, built from :mod:`cdp.spark_conf`, so the same job runs unchanged on local[*] or a cluster;
- otherwise (tests, the CLI) a local JVM is started with the Delta jars.

In the last two, the S3A connector's jars and settings come with them when anything is on S3 (an ``s3a://`` lake,
a dataset landing on S3: :func:`cdp.spark_conf.s3a_needs`), read as the JVM starts; the Connect server does the same
when it starts (:mod:`cdp.spark_connect`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from pyspark.sql import SparkSession

from cdp.spark_conf import delta_jars, s3a_needs, session_conf, submit_conf

log = logging.getLogger(__name__)

REMOTE_ENV = "CDP_SPARK_REMOTE"


def remote_url() -> str | None:
    """The Spark Connect URL the jobs use, when they run as Connect clients (else None)."""
    return os.environ.get(REMOTE_ENV) or None


def is_remote(spark: SparkSession) -> bool:
    """True for a Spark Connect client session (no SparkContext, no JVM in this process)."""
    return not hasattr(spark, "sparkContext") or type(spark).__module__.startswith("pyspark.sql.connect")


def get_session(app_name: str, master: str | None = None, extra: dict[str, str] | None = None,
                s3a: Sequence[str] | None = None) -> SparkSession:
    """Return the session for a job or a test.

    Under spark-submit the JVM already runs with the submit settings; with ``CDP_SPARK_REMOTE`` this is a
    client of that server; otherwise this starts a local one with the Delta jars. ``s3a``: what the session
    reads or writes on S3 (see :func:`cdp.spark_conf.s3a_needs`, its default from ``CDP_LAKE`` and
    ``CDP_WORKSPACE``); when anything is, the S3A connector's jars and settings come with the session.
    """
    url = remote_url()
    if url is not None and master is None:
        return _remote_session(url, app_name, extra)
    s3a = s3a_needs() if s3a is None else list(s3a)
    builder = SparkSession.builder.appName(app_name)
    conf = {**submit_conf(s3a), **(extra or {})}
    if "PYSPARK_GATEWAY_PORT" not in os.environ:  # not under spark-submit: we launch the JVM
        # Python UDF workers take their interpreter from this variable (read by the Python-side
        # SparkContext), not from spark.pyspark.python: without it they run `python3` from PATH,
        # which lacks the venv's pandas and pyarrow.
        os.environ.setdefault("PYSPARK_PYTHON", conf["spark.pyspark.python"])
        builder = builder.master(master or os.environ.get("CDP_SPARK_MASTER", "local[*]"))
        conf["spark.jars"] = ",".join(delta_jars(s3a))
        if s3a:
            log.info("Spark session with the S3A connector, for %s", "; ".join(s3a))
        conf.setdefault("spark.ui.enabled", "false")
        conf.setdefault("spark.driver.memory", os.environ.get("CDP_DRIVER_MEMORY", "4g"))
    for key, value in conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def _remote_session(url: str, app_name: str, extra: dict[str, str] | None) -> SparkSession:
    # Registers Delta's conflict exceptions in the Connect client's error conversion, so that
    # cdp.delta_io's retry on concurrent commits catches them as it does under py4j.
    import delta.connect.exceptions  # noqa: F401

    # create(), not getOrCreate(): a new server-side session of its own, whatever this process did before,
    # so that no temp view or conf of another job leaks into this one.
    builder = SparkSession.builder.remote(url).appName(app_name)
    session = builder.create()
    for key, value in {**session_conf(), **(extra or {})}.items():
        session.conf.set(key, value)
    return session


def quiet_spark_logs(spark: SparkSession) -> None:
    """Only Spark's errors in the console (the CLI's own output stays readable).

    A Connect client has no JVM log of its own to quiet: the server's log level is the server's.
    """
    if not is_remote(spark):
        spark.sparkContext.setLogLevel("ERROR")


def default_parallelism(spark: SparkSession) -> int:
    """How many tasks the cluster runs at once by default (Spark's ``defaultParallelism``).

    A Connect client has no SparkContext to ask: the server splits a range without a partition count into
    that many partitions, so the highest partition id of such a range tells it (one tiny job).
    """
    if not is_remote(spark):
        return int(spark.sparkContext.defaultParallelism)
    from pyspark.sql import functions as F

    row = spark.range(0, 1 << 16).withColumn("p", F.spark_partition_id()).agg(F.max("p").alias("p")).first()
    return 1 if row is None or row["p"] is None else int(row["p"]) + 1
