"""Resolve identities: link the identities seen together on a record and give each person a stable profile id.

The identity graph is cumulative, as the reference's: every identity and every link seen on any validated
record version up to the run date (the staging history ``staging/<dataset>``, profiles and events) stays
in it, with when it was last seen, until collapse protection drops it or, for a link, it expires
(``link_ttl_days`` of its namespaces or of the workspace's guardrails). A later version of a CRM record
that no longer carries an e-mail does not unlink the e-mail. Values are normalised once per distinct
value (:func:`cdp.identities.transform_normalize_values`: e-mails lower-cased, phones in E.164, blocked
values dropped and counted per reason). Identities on the same record are linked; the connected
components of the graph are the persons, after collapse protection (:mod:`cdp.identity_rules`) inside
the components that need it. A person keeps the profile id of the previous run's identity map (the older
id survives a merge; the part holding the oldest identity keeps it through a split); a new person's id
derives from its anchor identity (the identity of the highest priority namespace).

Incremental by default: the graph of run date D is the previous run's (``identity_nodes``,
``identity_links``) plus the identities and links of the staging batches after the previous run date up
to D, minus the links that expired; only the previous components holding one of those identities or an
end of an expired link are recomputed, the other components' rows are carried over (they would come out
of a full computation unchanged). The run reads only those batches, never the whole history. ``--mode
full`` reads the whole staging history up to D and gives the same tables; so does a run without a
compatible previous run (``identity_runs`` records which and why). A re-run of D starts from the run
before D, never from D's own earlier attempt.

Writes the ``identity_map``, ``identity_audit``, ``profile_id_changes``, ``identity_links``,
``identity_nodes`` and ``identity_runs`` slices of the run date.
Run as ``spark-submit jobs/resolve_identities.py --run-date YYYY-MM-DD [--mode auto|full]``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.window import Window

from cdp import small_tables
from cdp.delta_io import (
    create_table_if_absent,
    latest_partition_before,
    read_run_date_slice,
    read_table,
    replace_slice,
    table_exists,
)
from cdp.errors import CdpError
from cdp.graph import connected_components
from cdp.identities import phone_region_errors, transform_normalize_values
from cdp.identity_rules import LINK_EXPIRED, NODE_COLUMNS, OTHER_TYPE_RANK, REPLAYED, TYPE_RANK, transform_collapse
from cdp.job import StepKey, run_job
from cdp.lake import (
    IDENTITY_AUDIT,
    IDENTITY_LINKS,
    IDENTITY_MAP,
    IDENTITY_NODES,
    IDENTITY_RUNS,
    IDENTITY_SUMMARY,
    PROFILE_ID_CHANGES,
    STAGING,
    Lake,
    TableSpec,
    date_literal,
)
from cdp.monitoring.aggregates import identity_summary
from cdp.run_context import RunContext, job_parser
from cdp.schemas import BATCH_DATE, RECORD_TS, ROW_NUMBER, SOURCE_FILE, dataset_struct
from cdp.workspace.loader import Workspace
from cdp.workspace.models import Namespace, SchemaSpec

log = logging.getLogger(__name__)

STEP = "resolve_identities"
PROFILE_ID_LENGTH = 20  # hex characters of the anchor's SHA-256
# Part of the config fingerprint: a previous run written by a resolution that kept other state (before
# identities and links were cumulative) cannot be continued incrementally.
STATE_VERSION = 2

IDENTITY = T.StructType([
    T.StructField("namespace", T.StringType(), True),
    T.StructField("raw", T.StringType(), True),
])
# What transform_record_identities returns, whatever the dataset.
RECORD_IDENTITIES = T.StructType([
    T.StructField("record", T.StringType(), False),
    T.StructField("identities", T.ArrayType(IDENTITY, False), False),
    T.StructField(BATCH_DATE, T.DateType(), True),
    T.StructField(RECORD_TS, T.TimestampType(), True),
])
NODE_STATE = ["namespace", "value", "node_id", "first_seen", "last_seen", "last_seen_ts"]
LINK_STATE = ["src", "dst", "seen_date", "seen_ts", "expires_on"]


class IdentityCollisionError(CdpError):
    """Two different identities hashed to the same 64-bit node id: the graph would wrongly merge them."""


# ---------------------------------------------------------------- transforms


def transform_record_identities(df: DataFrame, schema: SchemaSpec) -> DataFrame:
    """The identities of each record as written: ``record`` (its batch date, source file and row: a key that
    stays the same however often Spark recomputes the frame, and differs between batches), ``identities``
    (array of (namespace, raw), nulls dropped, the primary identity first), ``_batch_date`` and ``_record_ts``.
    Records without any identity are dropped. An identity field the table does not hold yet (added to the
    schema after its last batch) reads as null.
    """
    fields = sorted(schema.identity_fields, key=lambda f: not (f.identity and f.identity.primary))
    structs = []
    for f in fields:
        assert f.identity is not None
        raw = F.col(f.name) if f.name in df.columns else F.lit(None)
        structs.append(F.struct(F.lit(f.identity.namespace).alias("namespace"), raw.cast(T.StringType()).alias("raw"))
                       .cast(IDENTITY))
    if not structs:
        return df.sparkSession.createDataFrame([], RECORD_IDENTITIES)
    present = F.filter(F.array(*structs), lambda s: s["raw"].isNotNull())
    record = F.concat_ws("#", F.col(BATCH_DATE).cast(T.StringType()), F.col(SOURCE_FILE),
                         F.col(ROW_NUMBER).cast(T.StringType()))
    return (df.select(record.alias("record"), present.alias("identities"), F.col(BATCH_DATE), F.col(RECORD_TS))
            .where(F.size("identities") > 0))


def transform_occurrences(records: DataFrame, normalized: DataFrame) -> DataFrame:
    """Each linkable identity of each record: ``record``, ``pos``, ``namespace``, ``value``, dates.

    ``records`` has a ``record`` id column; ``normalized`` comes from
    :func:`cdp.identities.transform_normalize_values` (dropped values are left out here).
    """
    exploded = records.select("record", F.posexplode("identities").alias("pos", "i"), BATCH_DATE, RECORD_TS)
    return (exploded.select("record", "pos", F.col("i.namespace").alias("namespace"), F.col("i.raw").alias("raw"),
                            BATCH_DATE, RECORD_TS)
            .join(normalized.where(F.col("value").isNotNull()), ["namespace", "raw"])
            .select("record", "pos", "namespace", "value", BATCH_DATE, RECORD_TS))


def distinct_raw_values(records: DataFrame) -> DataFrame:
    """The distinct ``(namespace, raw)`` values of the records: what normalisation runs on."""
    return records.select(F.explode("identities").alias("i")).select("i.namespace", "i.raw").distinct()


def node_id(namespace: Column, value: Column) -> Column:
    """The graph node of an identity: a 64-bit hash of (namespace, value)."""
    return F.xxhash64(namespace, value)


def transform_identities(occurrences: DataFrame) -> DataFrame:
    """Every distinct identity with its node id, the first batch date it was seen on and when it was last seen
    (``last_seen``: the latest batch date; ``last_seen_ts``: the newest record time of that batch date)."""
    latest = F.max(F.struct(F.col(BATCH_DATE).alias("d"), F.col(RECORD_TS).alias("t")))
    return (occurrences.groupBy("namespace", "value")
            .agg(F.min(BATCH_DATE).alias("first_seen"), latest.alias("seen"))
            .select("namespace", "value", node_id(F.col("namespace"), F.col("value")).alias("node_id"),
                    "first_seen", F.col("seen.d").alias("last_seen"), F.col("seen.t").alias("last_seen_ts")))


def link_ttls(namespaces: Mapping[str, Namespace], default_days: int | None) -> dict[str, int | None]:
    """The TTL in days of a link to an identity of each namespace: its own ``link_ttl_days``, else the
    workspace's ``guardrails.link_ttl_days`` (None: never expires)."""
    return {code: ns.link_ttl_days if ns.link_ttl_days is not None else default_days
            for code, ns in namespaces.items()}


def _ttl_of(ttls: Mapping[str, int | None], default_days: int | None, namespace: Column) -> Column:
    """The TTL in days of a link to ``namespace``: ``ttls`` (as :func:`link_ttls` gives them, so a namespace
    listed without one has no default either), ``default_days`` for a namespace ``ttls`` does not hold."""
    fallback = F.lit(default_days).cast(T.IntegerType())
    known = sorted((code, days) for code, days in ttls.items() if days is not None)
    if not known:
        return fallback
    lookup = F.create_map(*[x for code, days in known for x in (F.lit(code), F.lit(days).cast(T.IntegerType()))])
    return F.coalesce(lookup[namespace], fallback)


def transform_links(occurrences: DataFrame, ttls: Mapping[str, int | None] | None = None,
                    default_ttl_days: int | None = None) -> DataFrame:
    """Distinct undirected links ``(src, dst, seen_date, seen_ts, expires_on)``, src < dst: each record's first
    identity to each other one, with the latest (batch date, record time) the link was seen on.

    ``expires_on`` is the first run date on which the link is gone unless seen again: ``seen_date`` plus the
    shorter TTL of its two namespaces (``ttls``, :func:`link_ttls`; a namespace not in ``ttls`` takes
    ``default_ttl_days``); null when neither namespace has one. A star per record (k identities, k - 1 links)
    connects the record as well as a clique would.
    """
    ttls = ttls or {}
    ordered = Window.partitionBy("record").orderBy("pos").rowsBetween(Window.unboundedPreceding, Window.currentRow)
    node = node_id(F.col("namespace"), F.col("value"))
    pairs = occurrences.select(F.first(node).over(ordered).alias("a"), node.alias("b"),
                               F.first("namespace").over(ordered).alias("ns_a"), F.col("namespace").alias("ns_b"),
                               BATCH_DATE, RECORD_TS)
    # least() skips nulls: a link expires after the shorter TTL, a namespace without one does not count.
    ttl = F.least(_ttl_of(ttls, default_ttl_days, F.col("ns_a")), _ttl_of(ttls, default_ttl_days, F.col("ns_b")))
    seen = F.max(F.struct(F.col(BATCH_DATE).alias("d"), F.col(RECORD_TS).alias("t")))
    return (pairs.where(F.col("a") != F.col("b"))
            .groupBy(F.least("a", "b").alias("src"), F.greatest("a", "b").alias("dst"))
            .agg(seen.alias("seen"), F.min(ttl).alias("ttl"))
            .select("src", "dst", F.col("seen.d").alias("seen_date"), F.col("seen.t").alias("seen_ts"),
                    F.date_add(F.col("seen.d"), F.col("ttl")).alias("expires_on")))


def transform_merge_nodes(previous: DataFrame | None, observed: DataFrame) -> DataFrame:
    """The graph's identities: ``previous`` (the previous run's ``identity_nodes``) with the ``observed``
    identities added: first seen the earliest, last seen the latest of both (:data:`NODE_STATE` columns)."""
    if previous is None:
        return observed.select(*NODE_STATE)
    latest = F.max(F.struct(F.col("last_seen").alias("d"), F.col("last_seen_ts").alias("t")))
    return (previous.select(*NODE_STATE).unionByName(observed.select(*NODE_STATE))
            .groupBy("namespace", "value", "node_id")
            .agg(F.min("first_seen").alias("first_seen"), latest.alias("seen"))
            .select("namespace", "value", "node_id", "first_seen", F.col("seen.d").alias("last_seen"),
                    F.col("seen.t").alias("last_seen_ts")))


def transform_merge_links(previous: DataFrame | None, observed: DataFrame, run_date: dt.date,
                          since: dt.date | None) -> tuple[DataFrame, DataFrame]:
    """``(links, expired)``: the graph's links on ``run_date`` and those that expired since ``since``.

    ``previous`` (the previous run's ``identity_links``) and the ``observed`` links are merged, each link
    keeping its latest sighting (and that sighting's ``expires_on``). A link is alive while ``expires_on`` is
    null or after the run date; ``expired`` holds the links whose ``expires_on`` falls in (``since``,
    ``run_date``] (all up to ``run_date`` without ``since``): those alive on the previous run date and gone
    now, whichever way (incremental or full) the graph was built.
    """
    both = observed.select(*LINK_STATE)
    if previous is not None:
        both = previous.select(*LINK_STATE).unionByName(both)
    latest = F.max(F.struct("seen_date", "seen_ts", "expires_on"))
    merged = both.groupBy("src", "dst").agg(latest.alias("l")).select("src", "dst", "l.*")
    expires = F.col("expires_on")
    alive = merged.where(expires.isNull() | (expires > F.lit(run_date)))
    gone = expires <= F.lit(run_date)
    if since is not None:
        gone = gone & (expires > F.lit(since))
    return alive, merged.where(gone)


def _priority(priorities: Mapping[str, int], namespace: Column) -> Column:
    if not priorities:
        return F.lit(0)
    lookup = F.create_map(*[F.lit(x) for code, p in sorted(priorities.items()) for x in (code, p)])
    return F.coalesce(lookup[namespace], F.lit(0))


def profile_id_of(namespace: Column, value: Column) -> Column:
    """A profile id from its anchor identity: the first 20 hex characters of sha256('<namespace>:<value>')."""
    return F.substring(F.sha2(F.concat(namespace, F.lit(":"), value), 256), 1, PROFILE_ID_LENGTH)


def _anchors(members: DataFrame, priorities: Mapping[str, int]) -> DataFrame:
    """``(component, anchor)``: the identity of the highest priority, then namespace code, then smallest value."""
    # min of a struct orders field by field: highest priority (negated) first, then code, then value.
    key = F.struct((-_priority(priorities, F.col("namespace"))).alias("rank"), F.col("namespace"), F.col("value"))
    return members.groupBy("component").agg(F.min(key).alias("anchor"))


def transform_anchor_profile_ids(members: DataFrame, priorities: Mapping[str, int]) -> DataFrame:
    """``(component, profile_id)`` for each component of ``members`` (component, namespace, value).

    The anchor is the identity of the highest namespace priority, ties broken by namespace code,
    then by the smallest value; the profile id is derived from it (see :func:`profile_id_of`).
    """
    return _anchors(members, priorities).select(
        "component", profile_id_of(F.col("anchor.namespace"), F.col("anchor.value")).alias("profile_id"))


def transform_stable_profile_ids(members: DataFrame, previous: DataFrame | None, priorities: Mapping[str, int],
                                 run_date: dt.date) -> tuple[DataFrame, DataFrame]:
    """``(component, profile_id)`` and the changes since ``previous`` (the previous run's identity map).

    ``members`` has ``component``, ``namespace``, ``value``. A previous profile is *homed* in the
    component holding its oldest identity (first seen earliest, then namespace, then value); a
    component keeps, of the previous profiles homed in it, the one first seen earliest (ties: the
    smallest id). A component without one gets its anchor's id (:func:`profile_id_of`), or, when that
    id was already used, the anchor's id salted with the run date. Changes (``change``,
    ``profile_id``, ``previous_profile_id``, ``identities``): ``merge`` for the other previous
    profiles homed in a component, ``split`` for the identities of a previous profile that ended
    outside its home.
    """
    anchors = _anchors(members, priorities)
    fresh = profile_id_of(F.col("anchor.namespace"), F.col("anchor.value"))
    changes_schema = "change string, profile_id string, previous_profile_id string, identities long"
    if previous is None:
        ids = anchors.select("component", fresh.alias("profile_id"))
        return ids, members.sparkSession.createDataFrame([], changes_schema)

    prev = previous.select("namespace", "value", F.col("profile_id").alias("prev_id"),
                           F.col("first_seen").alias("prev_first_seen"))
    carried = members.select("component", "namespace", "value").join(prev, ["namespace", "value"])
    homes = (carried.groupBy("prev_id")
             .agg(F.min(F.struct("prev_first_seen", "namespace", "value", "component")).alias("oldest"))
             .select("prev_id", F.col("oldest.component").alias("home"), F.col("oldest.prev_first_seen").alias("age")))
    kept = (homes.groupBy(F.col("home").alias("component"))
            .agg(F.min(F.struct("age", "prev_id")).alias("k"))
            .select("component", F.col("k.prev_id").alias("kept_id")))
    used = prev.select(F.col("prev_id").alias("fresh_id")).distinct().withColumn("used", F.lit(True))
    salted = F.substring(F.sha2(F.concat(F.col("anchor.namespace"), F.lit(":"), F.col("anchor.value"),
                                         F.lit(f"@{run_date.isoformat()}")), 256), 1, PROFILE_ID_LENGTH)
    ids = (anchors.withColumn("fresh_id", fresh)
           .join(kept, "component", "left")
           .join(used, "fresh_id", "left")
           .select("component", F.coalesce(F.col("kept_id"),
                                           F.when(F.col("used"), salted).otherwise(F.col("fresh_id")))
                   .alias("profile_id")))
    moved = (carried.groupBy("component", "prev_id").agg(F.count(F.lit(1)).alias("identities"))
             .join(ids, "component").join(homes, "prev_id")
             .where(F.col("profile_id") != F.col("prev_id")))
    changes = moved.select(F.when(F.col("component") == F.col("home"), F.lit("merge")).otherwise(F.lit("split"))
                           .alias("change"), "profile_id", F.col("prev_id").alias("previous_profile_id"),
                           "identities")
    return ids, changes


def transform_members(identities: DataFrame, components: DataFrame, namespaces: Mapping[str, Namespace]) -> DataFrame:
    """The identities with their component, namespace type rank (cookie 0, device 1, others 2), priority and
    unique flag (:data:`NODE_COLUMNS`)."""
    priorities = {code: ns.priority for code, ns in namespaces.items()}
    ranks = {code: TYPE_RANK.get(ns.type, OTHER_TYPE_RANK) for code, ns in namespaces.items()}
    unique = sorted(code for code, ns in namespaces.items() if ns.unique)
    is_unique = F.col("namespace").isin(unique) if unique else F.lit(False)
    # A namespace the workspace does not declare ranks with the other types, not with the cookies.
    type_rank = (F.coalesce(F.create_map(*[F.lit(x) for code, r in sorted(ranks.items()) for x in (code, r)])
                            [F.col("namespace")], F.lit(OTHER_TYPE_RANK)) if ranks else F.lit(OTHER_TYPE_RANK))
    return (identities.join(components, identities["node_id"] == components["id"]).drop("id")
            .select("component", "node_id", "namespace", "value", type_rank.alias("type_rank"),
                    _priority(priorities, F.col("namespace")).alias("priority"), is_unique.alias("unique"),
                    "first_seen", "last_seen", "last_seen_ts"))


def transform_persons(members: DataFrame, replayed: DataFrame) -> DataFrame:
    """``members`` with ``component`` replaced by the person after collapse protection; the connected
    component before the rules stays in ``graph_component``."""
    labels = replayed.where(F.col("reason").isNull()).select("node_id", "label")
    return (members.join(labels, "node_id", "left")
            .withColumn("graph_component", F.col("component"))
            .withColumn("component", F.coalesce(F.col("label"), F.col("component"))).drop("label")
            .select(*NODE_COLUMNS, "graph_component"))


def transform_identity_map(persons: DataFrame, profile_ids: DataFrame, run_date: dt.date) -> DataFrame:
    """The identity map rows of the run date, in the column order of ``identity_map``."""
    return (persons.join(profile_ids, "component")
            .select(F.lit(run_date).alias("run_date"), "namespace", "value", "node_id", "profile_id",
                    "first_seen", "last_seen", F.col("graph_component").alias("component")))


def transform_audit(replayed: DataFrame, run_date: dt.date) -> DataFrame:
    """The dropped links and identities of the replay, in the column order of ``identity_audit``."""
    columns = [f.name for f in REPLAYED.fields if f.name not in ("node_id", "label")]
    return replayed.where(F.col("reason").isNotNull()).select(F.lit(run_date).alias("run_date"), *columns)


def transform_expired_audit(expired: DataFrame, nodes: DataFrame, components: DataFrame,
                            run_date: dt.date) -> DataFrame:
    """The ``link_expired`` rows of ``identity_audit``: each expired link with the identities at its ends and
    the component ``src`` is in without it (``components``: ``id``, ``component``)."""
    ends = nodes.select("node_id", "namespace", "value")
    other = ends.select(F.col("node_id").alias("dst"), F.col("namespace").alias("other_namespace"),
                        F.col("value").alias("other_value"))
    days = F.datediff(F.col("expires_on"), F.col("seen_date"))
    detail = F.format_string("not seen again within %d days of %s (link_ttl_days)", days,
                             F.col("seen_date").cast(T.StringType()))
    return (expired.join(ends.withColumnRenamed("node_id", "src"), "src")
            .join(other, "dst")
            .join(components.select(F.col("id").alias("src"), "component"), "src")
            .select(F.lit(run_date).alias("run_date"), "component", F.lit(LINK_EXPIRED).alias("reason"),
                    "namespace", "value", "other_namespace", "other_value", "seen_date", "seen_ts",
                    detail.alias("detail")))


@dataclass(frozen=True)
class PreviousRun:
    """What an incremental run starts from: the previous run date's identity map, links, audit and nodes."""

    run_date: dt.date
    identity_map: DataFrame
    links: DataFrame
    audit: DataFrame
    nodes: DataFrame


def transform_changed_nodes(observed: DataFrame, expired: DataFrame) -> DataFrame:
    """``node_id`` of every identity whose resolution inputs changed since the previous run: each identity of
    the new batches (new, or seen again: its last seen and its links' last seen move) and each end of an
    expired link. The ends of a new or re-seen link are identities of the batches, so they are in."""
    ends = expired.select(F.explode(F.array("src", "dst")).alias("node_id"))
    return observed.select("node_id").unionByName(ends).distinct()


def transform_touched_components(changed: DataFrame, previous_map: DataFrame) -> DataFrame:
    """``component``: the previous run's graph components holding a changed identity."""
    return previous_map.join(F.broadcast(changed.select("node_id")), "node_id", "left_semi").select(
        "component").distinct()


def transform_region(nodes: DataFrame, previous_map: DataFrame, touched: DataFrame,
                     changed: DataFrame) -> DataFrame:
    """The identities an incremental run recomputes: the changed ones and those of a touched component.

    The region is closed under the current links: a link carried from the previous run joins two
    identities of one previous component, and both ends of a new or re-seen link are changed nodes. Its
    size follows the day's changes, so it is broadcast rather than joined with a shuffle of the whole graph.
    """
    old = previous_map.join(F.broadcast(touched), "component", "left_semi").select("node_id")
    ids = old.unionByName(changed.select("node_id")).distinct()
    return nodes.join(F.broadcast(ids), "node_id", "left_semi")


def transform_incremental_region(observed: DataFrame, nodes: DataFrame, links: DataFrame, expired: DataFrame,
                                 previous: PreviousRun) -> tuple[DataFrame, DataFrame, DataFrame]:
    """``(touched, region, region_links)``: the previous components to recompute, the identities to
    recompute and the links between them (see :func:`transform_region`). ``observed`` are the identities of
    the new batches, ``nodes`` and ``links`` the graph of the run date, ``expired`` the links gone since.

    ``touched`` and ``region`` are checkpointed (computed once, and later plans start from them).
    """
    changed = transform_changed_nodes(observed, expired).localCheckpoint()
    touched = transform_touched_components(changed, previous.identity_map).localCheckpoint()
    region = transform_region(nodes, previous.identity_map, touched, changed).localCheckpoint()
    region_links = links.join(F.broadcast(region.select(F.col("node_id").alias("src"))), "src", "left_semi")
    return touched, region, region_links


def incremental_components(observed: DataFrame, nodes: DataFrame, links: DataFrame, expired: DataFrame,
                           previous: PreviousRun) -> DataFrame:
    """``(id, component)`` of every identity, computing connected components only where something changed
    since ``previous``: what the incremental run does before collapse protection (used by the benchmark)."""
    touched, region, region_links = transform_incremental_region(observed, nodes, links, expired, previous)
    fresh = connected_components(region_links.select("src", "dst"), region.select(F.col("node_id").alias("id")))
    carried = (previous.identity_map.join(touched, "component", "left_anti")
               .select(F.col("node_id").alias("id"), "component"))
    return fresh.unionByName(carried)


def resolve(records: DataFrame, namespaces: Mapping[str, Namespace], cap: int, previous_map: DataFrame | None,
            run_date: dt.date, incremental: PreviousRun | None = None, previous_date: dt.date | None = None,
            link_ttl_days: int | None = None) -> dict[str, DataFrame]:
    """The whole resolution as DataFrames: ``normalized``, ``observed`` (the records' identities), ``nodes``
    and ``links`` (the graph of the run date), ``expired``, ``replayed``, ``identity_map``, ``audit`` and
    ``changes`` (see the transforms). ``records`` as returned by :func:`transform_record_identities`
    (unioned over datasets); ``previous_map`` is the previous run's identity map (stable profile ids);
    ``link_ttl_days`` the workspace's default link TTL.

    Without ``incremental``, ``records`` must be every record version up to the run date (the graph is
    built from them alone) and ``previous_date`` the previous run date, if any (expired links are those gone
    since). With ``incremental``, ``records`` are the batches after ``incremental.run_date``: they are added
    to its graph, and connected components, collapse protection and profile ids are recomputed only for the
    identities of :func:`transform_region`; the previous run's rows of the other components (identity map
    and audit) are carried over unchanged, which is exactly what a full computation would give them since
    none of their inputs changed.
    """
    numbered = records.persist()
    normalized = transform_normalize_values(distinct_raw_values(numbered), namespaces).persist()
    occurrences = transform_occurrences(numbered, normalized).persist()
    observed = transform_identities(occurrences).persist()
    ttls = link_ttls(namespaces, link_ttl_days)
    observed_links = transform_links(occurrences, ttls, link_ttl_days)
    since = incremental.run_date if incremental is not None else previous_date
    nodes = transform_merge_nodes(incremental.nodes if incremental else None, observed).persist()
    alive, gone = transform_merge_links(incremental.links if incremental else None, observed_links, run_date, since)
    links, expired = alive.persist(), gone.persist()
    out = {"normalized": normalized, "occurrences": occurrences, "observed": observed, "nodes": nodes,
           "links": links, "expired": expired, "records": numbered}
    region_nodes, region_links = nodes, links
    carried_map: DataFrame | None = None
    carried_audit: DataFrame | None = None
    if incremental is not None:
        touched, region_nodes, region_links = transform_incremental_region(observed, nodes, links, expired,
                                                                           incremental)
        carried_map = (incremental.identity_map.join(touched, "component", "left_anti")
                       .withColumn("run_date", F.lit(run_date)))
        # An expiry is reported on the run that drops the link, never carried to the next.
        carried_audit = (incremental.audit.where(F.col("reason") != LINK_EXPIRED)
                         .join(touched, "component", "left_anti").withColumn("run_date", F.lit(run_date)))
        out.update({"touched": touched, "region": region_nodes})
    components = connected_components(region_links.select("src", "dst"),
                                      region_nodes.select(F.col("node_id").alias("id")))
    members = transform_members(region_nodes, components, namespaces).persist()
    replayed = transform_collapse(members, region_links, cap).persist()
    persons = transform_persons(members, replayed)
    priorities = {code: ns.priority for code, ns in namespaces.items()}
    ids, changes = transform_stable_profile_ids(persons, previous_map, priorities, run_date)
    identity_map = transform_identity_map(persons, ids, run_date)
    audit = transform_audit(replayed, run_date).unionByName(
        transform_expired_audit(expired, nodes, components, run_date))
    if carried_map is not None and carried_audit is not None:
        identity_map = identity_map.unionByName(carried_map.select(*identity_map.columns))
        audit = audit.unionByName(carried_audit.select(*audit.columns))
    out.update({"members": members, "replayed": replayed, "persons": persons, "identity_map": identity_map,
                "audit": audit, "changes": changes})
    return out


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
    """Replace the run date's slice of ``table`` with ``df``; return the table's path.

    New nullable columns of the declared schema are added to an existing table (additive evolution).
    """
    path = lake.path(table)
    assert table.schema is not None
    create_table_if_absent(spark, path, table.schema, table.partition_by)
    replace_slice(df, path, f"run_date = {date_literal(run_date)}", table.partition_by, add_new_columns=True)
    return path


def read_previous_map(spark: SparkSession, lake: Lake, run_date: dt.date) -> tuple[DataFrame | None, dt.date | None]:
    """The identity map of the latest run date before ``run_date`` (None when there is none)."""
    path = lake.path(IDENTITY_MAP)
    if not table_exists(spark, path):
        return None, None
    table = read_table(spark, path)
    previous = latest_partition_before(table, "run_date", run_date)
    if previous is None:
        return None, None
    return table.where(F.col("run_date") == F.lit(previous)), previous


def config_fingerprint(namespaces: Mapping[str, Namespace], cap: int, link_ttl_days: int | None = None) -> str:
    """A hash of every setting that changes how identities resolve: an incremental run needs the previous
    run's to be equal (a new priority, unique flag or cap changes components no link touched; a longer TTL
    would need links the previous run already dropped)."""
    settings = {"namespaces": {code: ns.model_dump(mode="json") for code, ns in sorted(namespaces.items())},
                "max_identities_per_graph": cap, "link_ttl_days": link_ttl_days, "state_version": STATE_VERSION}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def incremental_start(spark: SparkSession, lake: Lake, previous_map: DataFrame | None,
                      previous_date: dt.date | None, fingerprint: str, mode: str) -> tuple[PreviousRun | None, str]:
    """The previous run to start an incremental run from, or None and why the run is full."""
    if mode == "full":
        return None, "full rebuild requested"
    if previous_map is None or previous_date is None:
        return None, "no previous run"
    runs = read_run_date_slice(spark, lake, IDENTITY_RUNS, previous_date, absent_as_empty=True).collect()
    if not runs:
        return None, f"the run of {previous_date} left no identity_runs row (written before incremental runs)"
    if runs[0]["config_fingerprint"] != fingerprint:
        return None, (f"namespaces, identity cap or link TTL changed since the run of {previous_date}, or it was "
                      "written before identities and links were cumulative")
    links = read_run_date_slice(spark, lake, IDENTITY_LINKS, previous_date, absent_as_empty=True)
    audit = read_run_date_slice(spark, lake, IDENTITY_AUDIT, previous_date, absent_as_empty=True)
    nodes = read_run_date_slice(spark, lake, IDENTITY_NODES, previous_date, absent_as_empty=True)
    return PreviousRun(previous_date, previous_map, links, audit, nodes), \
        f"components touched since the run of {previous_date}"


def read_records(spark: SparkSession, ws: Workspace, lake: Lake, run_date: dt.date,
                 after: dt.date | None) -> DataFrame:
    """The identities of every validated record version of the identity-enabled datasets with a batch date
    up to ``run_date`` and, when given, after ``after`` (:func:`transform_record_identities`, unioned).

    Read from the staging history, which keeps every version of a profile record (the dataset table keeps
    only the newest); its ``_batch_date`` partitions are pruned, so an incremental run reads its batches only.
    """
    records = spark.createDataFrame([], RECORD_IDENTITIES)
    for d in ws.identity_datasets:
        schema = ws.schema_of(d.name)
        staged = read_table(spark, lake.path(STAGING, d.name), dataset_struct(schema))
        window = F.col(BATCH_DATE) <= F.lit(run_date)
        if after is not None:
            window = window & (F.col(BATCH_DATE) > F.lit(after))
        records = records.unionByName(transform_record_identities(staged.where(window), schema))
    return records


def check_phone_regions(namespaces: Mapping[str, Namespace]) -> None:
    """Refuse a phone ``default_region`` the phone library does not know before reading anything."""
    errors = phone_region_errors(namespaces)
    if errors:
        raise CdpError("; ".join(errors))


def dropped_metrics(normalized: DataFrame, records: DataFrame | None = None,
                    since: dt.date | None = None) -> dict[str, int]:
    """``dropped.<namespace>.<reason>``: how many distinct values of each namespace were not linked, and why.

    With ``records`` and ``since``, only the values of the records batched after ``since`` count (the
    batches since the previous run: a full rebuild reports what an incremental run of the day would).
    """
    dropped = normalized.where(F.col("reason").isNotNull())
    if records is not None and since is not None:
        recent = (records.where(F.col(BATCH_DATE) > F.lit(since)).select(F.explode("identities").alias("i"))
                  .select("i.namespace", "i.raw").distinct())
        dropped = dropped.join(recent, ["namespace", "raw"], "left_semi")
    rows = dropped.groupBy("namespace", "reason").count().collect()
    return {f"dropped.{r['namespace']}.{r['reason']}": int(r["count"]) for r in rows}


def run(spark: SparkSession, ws: Workspace, ctx: RunContext, mode: str = "auto") -> dict[str, int]:
    """Resolve the identities of every identity-enabled dataset as of the run date; write the identity map,
    the graph (links and nodes), the audit of the links and identities collapse protection dropped and of the
    links that expired, the profile id changes and how the run was computed.

    ``mode`` ``auto`` starts from the previous run and reads only the batches after it when that run is
    compatible (see :func:`incremental_start`); ``full`` reads the whole staging history up to the run date.
    """
    check_phone_regions(ws.namespaces)
    previous, previous_date = read_previous_map(spark, ctx.lake, ctx.run_date)
    cap = ws.config.guardrails.max_identities_per_graph
    ttl = ws.config.guardrails.link_ttl_days
    fingerprint = config_fingerprint(ws.namespaces, cap, ttl)
    start, reason = incremental_start(spark, ctx.lake, previous, previous_date, fingerprint, mode)
    log.info("identity resolution of %s: %s (%s)", ctx.run_date, "incremental" if start else "full", reason)
    records = read_records(spark, ws, ctx.lake, ctx.run_date, start.run_date if start else None)
    out = resolve(records, ws.namespaces, cap, previous, ctx.run_date, start, previous_date, ttl)
    try:
        identity_count = check_no_hash_collisions(out["nodes"])
        link_count = out["links"].count()
        records_read = out["records"].count()
        recomputed = out["region"].count() if start else identity_count
        touched = out["touched"].count() if start else None
        metrics = dropped_metrics(out["normalized"], out["records"], start.run_date if start else previous_date)
        path = write_slice(spark, out["identity_map"], ctx.lake, IDENTITY_MAP, ctx.run_date)
        write_slice(spark, out["audit"], ctx.lake, IDENTITY_AUDIT, ctx.run_date)
        previous_run = F.lit(previous_date).cast(T.DateType()).alias("previous_run_date")
        changes = out["changes"].select(F.lit(ctx.run_date).alias("run_date"), "change", "profile_id",
                                        "previous_profile_id", previous_run, "identities")
        write_slice(spark, changes, ctx.lake, PROFILE_ID_CHANGES, ctx.run_date)
        write_slice(spark, out["links"].select(F.lit(ctx.run_date).alias("run_date"), *LINK_STATE), ctx.lake,
                    IDENTITY_LINKS, ctx.run_date)
        nodes = out["nodes"].select(F.lit(ctx.run_date).alias("run_date"), "node_id", "namespace", "value",
                                    "first_seen", "last_seen", "last_seen_ts")
        write_slice(spark, nodes, ctx.lake, IDENTITY_NODES, ctx.run_date)
        # Written last: the next run continues from this day only when its identity_runs row exists.
        how = (ctx.run_date, "incremental" if start else "full", reason, previous_date, fingerprint, identity_count,
               link_count, recomputed, touched)
        small_tables.replace_rows(ctx.lake.path(IDENTITY_RUNS), IDENTITY_RUNS, [how], {"run_date": ctx.run_date},
                                  add_new_columns=True)
    finally:
        for name in ("replayed", "members", "region", "touched", "links", "expired", "nodes", "observed",
                     "occurrences", "normalized", "records"):
            if name in out:
                out[name].unpersist()

    written = read_table(spark, path).where(F.col("run_date") == F.lit(ctx.run_date))
    sizes = written.groupBy("profile_id").count()
    row = sizes.agg(F.count(F.lit(1)).alias("profiles"), F.max("count").alias("largest")).first()
    assert row is not None
    audit = read_run_date_slice(spark, ctx.lake, IDENTITY_AUDIT, ctx.run_date, absent_as_empty=True)
    audited = {r["reason"]: int(r["count"]) for r in audit.groupBy("reason").count().collect()}
    moved = read_run_date_slice(spark, ctx.lake, PROFILE_ID_CHANGES, ctx.run_date, absent_as_empty=True)
    changed = {r["change"]: int(r["count"]) for r in moved.groupBy("change").count().collect()}
    metrics.update({
        "records_read": records_read,
        "identities": identity_count,
        "links": link_count,
        "recomputed_identities": recomputed,
        "profiles": int(row["profiles"]),
        "max_identities_per_profile": int(row["largest"] or 0),
        "links_dropped": audited.get("unique_namespace", 0),
        "identities_dropped": audited.get("identity_cap", 0),
        "links_expired": audited.get(LINK_EXPIRED, 0),
        "profile_merges": changed.get("merge", 0),
        "profile_splits": changed.get("split", 0),
    })
    small_tables.replace_rows(ctx.lake.path(IDENTITY_SUMMARY), IDENTITY_SUMMARY,
                              [identity_summary(ctx.run_date, sizes, identity_count, link_count, metrics)],
                              {"run_date": ctx.run_date})
    return metrics


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``spark-submit jobs/resolve_identities.py``."""
    parser = job_parser("Resolve identities into profiles: writes the identity map of the run date.")
    parser.add_argument("--mode", choices=["auto", "full"], default="auto",
                        help="auto: recompute only the components touched since the previous run when it is "
                             "compatible; full: rebuild every component")
    run_job(parser, argv, lambda _args: StepKey(STEP),
            lambda spark, ws, ctx, args: run(spark, ws, ctx, args.mode),
            requires=lambda _args, ws: [StepKey("ingest", d.name) for d in ws.identity_datasets])


if __name__ == "__main__":
    main()
