"""Resolve identities: link the identities seen together on a record and give each group a profile id.

Every identity-enabled dataset contributes its records' identities (normalised, per namespace).
Identities on the same record are linked; the connected components of the resulting graph are the
profiles. A profile's id is derived from its *anchor* identity (the identity of the highest
priority namespace), so that it is deterministic for a given graph.

Writes the ``identity_map`` slice of the run date. Run as ``spark-submit jobs/resolve_identities.py
--run-date YYYY-MM-DD``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdp.datasets import read_dataset_as_of
from cdp.delta_io import create_table_if_absent, read_table, record_metrics, replace_slice
from cdp.errors import CdpError
from cdp.graph import connected_components
from cdp.identities import normalize
from cdp.lake import IDENTITY_MAP, Lake, TableSpec, date_literal
from cdp.run_context import RunContext, job_parser, parse_job_args
from cdp.schemas import BATCH_DATE
from cdp.spark import get_session
from cdp.workspace.loader import Workspace
from cdp.workspace.models import Namespace, SchemaSpec

log = logging.getLogger(__name__)

STEP = "resolve_identities"
PROFILE_ID_LENGTH = 20  # hex characters of the anchor's SHA-256

IDENTITY = T.StructType([
    T.StructField("namespace", T.StringType(), True),
    T.StructField("value", T.StringType(), True),
])
# What transform_record_identities returns, whatever the dataset.
RECORD_IDENTITIES = T.StructType([
    T.StructField("identities", T.ArrayType(IDENTITY, False), False),
    T.StructField(BATCH_DATE, T.DateType(), True),
])


class IdentityCollisionError(CdpError):
    """Two different identities hashed to the same 64-bit node id: the graph would wrongly merge them."""


# ---------------------------------------------------------------- transforms


def transform_record_identities(df: DataFrame, schema: SchemaSpec, namespaces: Mapping[str, Namespace]) -> DataFrame:
    """The identities of each record: ``identities`` (array of (namespace, value), distinct, nulls
    dropped, the primary identity first) and ``_batch_date``. Records without any identity are dropped.
    """
    fields = sorted(schema.identity_fields, key=lambda f: not (f.identity and f.identity.primary))
    structs = []
    for f in fields:
        assert f.identity is not None
        namespace = f.identity.namespace
        value = normalize(namespaces[namespace].type, F.col(f.name))
        structs.append(F.struct(F.lit(namespace).alias("namespace"), value.alias("value")).cast(IDENTITY))
    if not structs:
        return df.sparkSession.createDataFrame([], RECORD_IDENTITIES)
    present = F.array_distinct(F.filter(F.array(*structs), lambda s: s["value"].isNotNull()))
    return (df.select(present.alias("identities"), F.col(BATCH_DATE))
            .where(F.size("identities") > 0))


def node_id(namespace: Column, value: Column) -> Column:
    """The graph node of an identity: a 64-bit hash of (namespace, value)."""
    return F.xxhash64(namespace, value)


def transform_identities(records: DataFrame) -> DataFrame:
    """Every distinct identity with its node id and the first and last batch date it was seen on."""
    exploded = records.select(F.explode("identities").alias("i"), F.col(BATCH_DATE))
    return (exploded.groupBy(F.col("i.namespace").alias("namespace"), F.col("i.value").alias("value"))
            .agg(F.min(BATCH_DATE).alias("first_seen"), F.max(BATCH_DATE).alias("last_seen"))
            .select("namespace", "value", node_id(F.col("namespace"), F.col("value")).alias("node_id"),
                    "first_seen", "last_seen"))


def transform_links(records: DataFrame) -> DataFrame:
    """Distinct undirected edges ``(src, dst)``, src < dst: each record's first identity to each other one.

    A star per record (k identities, k - 1 edges) connects the record as well as a clique would.
    """
    first = F.col("identities")[0]
    others = F.slice("identities", 2, F.greatest(F.size("identities") - 1, F.lit(1)))
    pairs = (records.where(F.size("identities") > 1)
             .select(node_id(first["namespace"], first["value"]).alias("a"), F.explode(others).alias("o"))
             .select("a", node_id(F.col("o.namespace"), F.col("o.value")).alias("b")))
    return (pairs.where(F.col("a") != F.col("b"))
            .select(F.least("a", "b").alias("src"), F.greatest("a", "b").alias("dst"))
            .distinct())


def _priority(priorities: Mapping[str, int], namespace: Column) -> Column:
    if not priorities:
        return F.lit(0)
    lookup = F.create_map(*[F.lit(x) for code, p in sorted(priorities.items()) for x in (code, p)])
    return F.coalesce(lookup[namespace], F.lit(0))


def profile_id_of(namespace: Column, value: Column) -> Column:
    """A profile id from its anchor identity: the first 20 hex characters of sha256('<namespace>:<value>')."""
    return F.substring(F.sha2(F.concat(namespace, F.lit(":"), value), 256), 1, PROFILE_ID_LENGTH)


def transform_anchor_profile_ids(members: DataFrame, priorities: Mapping[str, int]) -> DataFrame:
    """``(component, profile_id)`` for each component of ``members`` (component, namespace, value).

    The anchor is the identity of the highest namespace priority, ties broken by namespace code,
    then by the smallest value; the profile id is derived from it (see :func:`profile_id_of`).
    Stable ids across merges and splits will replace this function.
    """
    # min of a struct orders field by field: highest priority (negated) first, then code, then value.
    key = F.struct((-_priority(priorities, F.col("namespace"))).alias("rank"), F.col("namespace"), F.col("value"))
    anchors = members.groupBy("component").agg(F.min(key).alias("anchor"))
    return anchors.select("component", profile_id_of(F.col("anchor.namespace"), F.col("anchor.value"))
                          .alias("profile_id"))


def transform_identity_map(identities: DataFrame, components: DataFrame, priorities: Mapping[str, int],
                           run_date: dt.date) -> DataFrame:
    """The identity map rows of the run date, in the column order of ``identity_map``.

    ``identities`` comes from :func:`transform_identities`, ``components`` (id, component) from
    :func:`cdp.graph.connected_components` over the links.
    """
    members = identities.join(components, identities["node_id"] == components["id"]).drop("id")
    profile_ids = transform_anchor_profile_ids(members.select("component", "namespace", "value"), priorities)
    return (members.join(profile_ids, "component")
            .select(F.lit(run_date).alias("run_date"), "namespace", "value", "node_id", "profile_id",
                    "first_seen", "last_seen"))


# ---------------------------------------------------------------- checks and I/O


def check_no_hash_collisions(identities: DataFrame) -> int:
    """Raise IdentityCollisionError unless every distinct identity has its own node id; return the count."""
    row = identities.agg(F.count(F.lit(1)).alias("identities"),
                         F.count_distinct("node_id").alias("node_ids")).first()
    assert row is not None
    if row["identities"] != row["node_ids"]:
        raise IdentityCollisionError(
            f"{row['identities']} distinct identities hash to only {row['node_ids']} node ids "
            f"({row['identities'] - row['node_ids']} xxhash64 collision(s)); resolution would merge unrelated "
            "identities, so it stops here")
    return int(row["identities"])


def write_slice(spark: SparkSession, df: DataFrame, lake: Lake, table: TableSpec, run_date: dt.date) -> str:
    """Replace the run date's slice of ``table`` with ``df``; return the table's path."""
    path = lake.path(table)
    assert table.schema is not None
    create_table_if_absent(spark, path, table.schema, table.partition_by)
    replace_slice(df, path, f"run_date = {date_literal(run_date)}", table.partition_by)
    return path


def run(spark: SparkSession, ws: Workspace, ctx: RunContext) -> dict[str, int]:
    """Resolve the identities of every identity-enabled dataset as of the run date; write the identity map."""
    parts = [transform_record_identities(read_dataset_as_of(spark, ctx.lake, ws, d.name, ctx.run_date),
                                         ws.schema_of(d.name), ws.namespaces)
             for d in ws.identity_datasets]
    records = spark.createDataFrame([], RECORD_IDENTITIES)
    for part in parts:
        records = records.unionByName(part)
    # Both the identities and the links read the records; the graph and the map read both again.
    records = records.persist()
    identities = transform_identities(records).persist()
    links = transform_links(records).persist()
    try:
        identity_count = check_no_hash_collisions(identities)
        link_count = links.count()
        components = connected_components(links, identities.select(F.col("node_id").alias("id")))
        priorities = {code: ns.priority for code, ns in ws.namespaces.items()}
        identity_map = transform_identity_map(identities, components, priorities, ctx.run_date)
        path = write_slice(spark, identity_map, ctx.lake, IDENTITY_MAP, ctx.run_date)
    finally:
        for df in (links, identities, records):
            df.unpersist()

    written = read_table(spark, path).where(F.col("run_date") == F.lit(ctx.run_date))
    sizes = written.groupBy("profile_id").count()
    row = sizes.agg(F.count(F.lit(1)).alias("profiles"), F.max("count").alias("largest")).first()
    assert row is not None
    return {
        "identities": identity_count,
        "links": link_count,
        "profiles": int(row["profiles"]),
        "max_identities_per_profile": int(row["largest"] or 0),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``spark-submit jobs/resolve_identities.py``."""
    parser = job_parser("Resolve identities into profiles: writes the identity map of the run date.")
    _, ctx, ws = parse_job_args(parser, argv)
    spark = get_session(STEP)
    metrics = run(spark, ws, ctx)
    record_metrics(spark, ctx.lake, ctx.run_date, STEP, "all", metrics)


if __name__ == "__main__":
    main()
