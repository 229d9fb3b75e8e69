"""Spark settings every job needs, without importing pyspark (the DAG's operators use these).

``cdp.spark`` builds sessions from them; the Airflow operator passes them to spark-submit.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from cdp.settings import JARS_DIR, Settings

LOG4J2_CONFIG = Path(__file__).resolve().parent / "spark-log4j2.properties"

DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


def delta_jars(s3a: Sequence[str] | None = None) -> list[str]:
    """The Delta jars resolved by ``make setup`` (``scripts/setup.sh``), so runs start offline.

    With anything on S3 (``s3a``, default :func:`s3a_needs` of the environment) the S3A connector's jars come
    with them (:func:`s3a_jars`).
    """
    jars = sorted(str(p) for p in Path(JARS_DIR).glob("*.jar"))
    if not jars:
        raise FileNotFoundError(f"no jars in {JARS_DIR}: run `make setup` to resolve the Delta jars")
    return jars + s3a_jars(s3a_needs() if s3a is None else s3a)


# ---------------------------------------------------------------- S3 through Hadoop's S3A connector, issue 13
# hadoop-aws must be the version of the Hadoop client Spark ships (pyspark 4.1: hadoop-client-api 3.4.2), with
# the AWS SDK v2 bundle that version was built against; scripts/setup.sh resolves both into .jars/s3a/. They
# live in a sub-folder of their own so that the sessions of a deployment with nothing on S3 do not load a 640 MB
# SDK they never use.
S3A_JARS_DIR = Path(JARS_DIR) / "s3a"
S3A_SCHEMES = ("s3a://",)


def lake_on_s3(lake: str) -> bool:
    """True when the lake is an ``s3a://`` URL (Spark reads and writes it through Hadoop's S3A connector)."""
    return lake.startswith(S3A_SCHEMES)


def s3a_needs(settings: Settings | None = None) -> list[str]:
    """What makes the sessions of these settings (default: the environment's) need the S3A connector, one phrase
    each; empty when nothing does.

    The lake when it is ``s3a://`` (``CDP_LAKE``), and every dataset of the workspace (``CDP_WORKSPACE``) whose
    files land on S3 (``source.type: s3``): Spark reads those objects in place (``s3a://``), on whichever
    machine runs the task, so the connector's jars must be on the classpath when the JVM starts.
    """
    from cdp.workspace.landing_sources import s3_landing_datasets

    settings = settings or Settings.from_env()
    needs = [f"the lake {settings.lake}"] if lake_on_s3(settings.lake) else []
    needs += [f"dataset {name} (lands in {uri})" for name, uri in s3_landing_datasets(settings.workspace).items()]
    return needs


def s3a_jars(needs: Sequence[str]) -> list[str]:
    """hadoop-aws and the AWS SDK bundle when something is on S3 (``needs``, see :func:`s3a_needs`), else none."""
    if not needs:
        return []
    jars = sorted(str(p) for p in S3A_JARS_DIR.glob("*.jar"))
    if not any("hadoop-aws" in Path(j).name for j in jars):
        raise FileNotFoundError(f"{'; '.join(needs)} {'is' if len(needs) == 1 else 'are'} on S3 but {S3A_JARS_DIR} "
                                "has no hadoop-aws jar: run `make setup` to resolve it (with the AWS SDK bundle)")
    return jars


# The setting every session with the S3A connector has: validate looks for it before reading a landed object.
S3A_IMPL = "spark.hadoop.fs.s3a.impl"


def s3a_conf(needs: Sequence[str], env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Hadoop settings of the S3A connector when something is on S3 (``needs``, see :func:`s3a_needs`), else none.

    Only where the store is: the endpoint (``CDP_S3_ENDPOINT``, else ``AWS_ENDPOINT_URL_S3`` /
    ``AWS_ENDPOINT_URL``, as boto3 reads them), its region and path-style addressing. Credentials are never
    settings (they would show on command lines and in Spark's UI): S3A's default provider chain reads
    ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (and ``AWS_SESSION_TOKEN``) from the environment of
    the driver and of each executor, or the instance's / pod's role.
    """
    if not needs:
        return {}
    env = dict(os.environ) if env is None else env
    conf = {
        S3A_IMPL: "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.endpoint.region":
            env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
    }
    endpoint = env.get("CDP_S3_ENDPOINT") or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        # An S3-compatible store (MinIO, moto, Ceph) answers on one host: path-style requests, and plain HTTP
        # when the endpoint says so.
        conf["spark.hadoop.fs.s3a.endpoint"] = endpoint
        conf["spark.hadoop.fs.s3a.path.style.access"] = env.get("CDP_S3_PATH_STYLE", "true")
        conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(endpoint.startswith("https://")).lower()
    return conf


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
        # Delta's VACUUM lists a table's folders with a job of this many tasks (Spark's default 10,000): 32 s
        # for a table of one file on 2 cores, 2 s with 16. Raise it on a cluster whose tables have many folders.
        "spark.sql.sources.parallelPartitionDiscovery.parallelism": os.environ.get("CDP_LISTING_PARALLELISM", "16"),
        # Schema changes are made on purpose by the jobs (additive evolution), never merged implicitly.
        "spark.databricks.delta.schema.autoMerge.enabled": "false",
        # Plans over several cached frames print each cache's plan again: bound the text the UI keeps.
        "spark.sql.maxPlanStringLength": "1048576",
    }


def submit_conf(s3a: Sequence[str] | None = None) -> dict[str, str]:
    """Spark settings every job needs, whoever launches it (builder or spark-submit).

    ``s3a``: what is on S3 (default :func:`s3a_needs` of the environment); the S3A settings come with it.
    """
    return {
        **DELTA_CONF,
        **session_conf(),
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile=file:{LOG4J2_CONFIG}",
        # Python workers must run the interpreter that has pyspark and cdp installed (the venv's),
        # not whatever `python3` comes first on PATH. On a cluster, set PYSPARK_PYTHON to its path there.
        "spark.pyspark.python": os.environ.get("PYSPARK_PYTHON", sys.executable),
        **s3a_conf(s3a_needs() if s3a is None else s3a),
    }
