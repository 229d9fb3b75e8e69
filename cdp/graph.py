"""Connected components of a large undirected graph with DataFrames only.

The algorithm alternates the *large-star* and *small-star* operations of Kiveris et al.,
"Connected Components in MapReduce and Beyond" (SoCC 2014). Both keep every component connected
and its smallest node in it; together they turn each component into a star centred on its
smallest node in O(log² n) rounds, each round a couple of joins and aggregations.

Edges are kept oriented: between rounds every edge is stored once as (src, dst) with src < dst.

* large-star: every node ``u`` links each *larger* neighbour ``v`` to ``m(u)``, the smallest of
  ``u`` and all its neighbours.
* small-star: every node ``u`` links itself and each *smaller* neighbour ``v`` to ``m'(u)``, the
  smallest of its smaller neighbours.

A star centred on the smallest node is a fixed point of a round, so the loop stops as soon as a
round returns the edge set it was given (compared by count and an order-independent checksum).
"""

from __future__ import annotations

import logging

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.window import Window

from cdp.errors import CdpError
from cdp.spark import is_remote

log = logging.getLogger(__name__)

SRC = "src"
DST = "dst"


class ConvergenceError(CdpError):
    """Connected components did not converge within the allowed number of rounds."""


def _oriented(edges: DataFrame) -> DataFrame:
    """Distinct undirected edges stored once as (smaller, larger); self-loops dropped."""
    src, dst = F.col(SRC).cast(T.LongType()), F.col(DST).cast(T.LongType())
    return (edges.where(src.isNotNull() & dst.isNotNull() & (src != dst))
            .select(F.least(src, dst).alias(SRC), F.greatest(src, dst).alias(DST))
            .distinct())


def _large_star(edges: DataFrame) -> DataFrame:
    """Link every strictly larger neighbour of each node to the node's smallest neighbour (or itself).

    Input and output are oriented src < dst.
    """
    # Each edge seen from both ends, as (u, neighbour v). A window rather than groupBy + join keeps
    # ``edges`` referenced once, so that the plan grows linearly, not exponentially, with the rounds.
    both_ways = edges.select(F.explode(F.array(
        F.struct(F.col(SRC).alias("u"), F.col(DST).alias("v")),
        F.struct(F.col(DST).alias("u"), F.col(SRC).alias("v")),
    )).alias("e")).select("e.u", "e.v")
    smallest = F.least(F.min("v").over(Window.partitionBy("u")), F.col("u"))
    # m(u) <= u < v, so the new edges are oriented too. Each input edge yields at most one edge:
    # duplicates are left to the distinct of the small-star step, saving a shuffle.
    return (both_ways.withColumn("m", smallest).where(F.col("v") > F.col("u"))
            .select(F.col("m").alias(SRC), F.col("v").alias(DST)))


def _small_star(edges: DataFrame) -> DataFrame:
    """Link each node and all its smaller neighbours to the smallest of those neighbours.

    Input and output are oriented src < dst.
    """
    # Viewed from the larger end u = dst, the smaller neighbours are the src of its edges.
    m = F.min(SRC).over(Window.partitionBy(DST))
    linked = edges.withColumn("m", m).select(F.explode(F.array(
        F.struct(F.col("m").alias(SRC), F.col(SRC).alias(DST)),  # each smaller neighbour -> m
        F.struct(F.col("m").alias(SRC), F.col(DST).alias(DST)),  # the node itself -> m
    )).alias("e")).select(f"e.{SRC}", f"e.{DST}")
    return linked.where(F.col(SRC) != F.col(DST)).distinct()


def _fingerprint(edges: DataFrame) -> tuple[int, object, object]:
    """Edge count and order-independent checksums of the edge set: equal across rounds = converged."""
    # Decimal sums cannot overflow where a long sum of 64-bit hashes would.
    row = edges.agg(
        F.count(F.lit(1)).alias("n"),
        F.sum(F.xxhash64(SRC, DST).cast(T.DecimalType(38, 0))).alias("h"),
        F.sum(F.col(SRC).cast(T.DecimalType(38, 0))).alias("s"),
    ).first()
    assert row is not None
    return int(row["n"]), row["h"], row["s"]


def _truncate(edges: DataFrame) -> DataFrame:
    """Cut the lineage of ``edges`` (eagerly), reliably when the session has a checkpoint directory."""
    if checkpoint_dir(edges.sparkSession) is not None:
        return edges.checkpoint(eager=True)
    return edges.localCheckpoint(eager=True)


def checkpoint_dir(spark: SparkSession) -> str | None:
    """The session's reliable checkpoint folder, if it has one.

    A Spark Connect client has no SparkContext: its server sets ``spark.checkpoint.dir`` at start
    (:mod:`cdp.spark_connect`), which the client reads as a conf.
    """
    if is_remote(spark):
        return spark.conf.get("spark.checkpoint.dir", None) or None
    return spark.sparkContext.getCheckpointDir()


def connected_components(edges: DataFrame, nodes: DataFrame | None = None, checkpoint_every: int = 2,
                         max_iterations: int = 100) -> DataFrame:
    """Label every node with the smallest node id of its connected component.

    ``edges`` has columns ``src`` and ``dst`` (longs; undirected, duplicates and self-loops allowed);
    ``nodes`` (column ``id``) adds nodes that may have no edge. Returns ``(id long, component long)``
    with one row per node of either input. The edge set is checkpointed every ``checkpoint_every``
    rounds so that the query plan does not grow with the number of rounds; :class:`ConvergenceError`
    is raised when ``max_iterations`` rounds do not suffice.

    ``edges`` and ``nodes`` are read twice (the rounds, then the node list): persist them when they
    are expensive to compute. The result reads the last checkpoint, not a cache, so it stays valid.
    """
    if checkpoint_every < 1:
        raise ValueError("checkpoint_every must be at least 1")
    if max_iterations < 1:
        raise ValueError("max_iterations must be at least 1")

    current = _truncate(_oriented(edges))
    previous = _fingerprint(current)
    cached: DataFrame | None = None  # the round's result when it was persisted rather than checkpointed
    checkpointed = True
    converged = False
    rounds = 0
    for rounds in range(1, max_iterations + 1):
        following = _small_star(_large_star(current))
        if rounds % checkpoint_every == 0:
            following = _truncate(following)
            checkpointed = True
        else:
            # Persist so that the fingerprint and the next round reuse it instead of recomputing it.
            following = following.persist(StorageLevel.MEMORY_AND_DISK)
            checkpointed = False
        fingerprint = _fingerprint(following)
        if cached is not None:
            cached.unpersist()
        cached = None if checkpointed else following
        current = following
        log.debug("connected components round %d: %d edges", rounds, fingerprint[0])
        if fingerprint == previous:
            converged = True
            break
        previous = fingerprint
    if not converged:
        if cached is not None:
            cached.unpersist()
        raise ConvergenceError(f"connected components did not converge within {max_iterations} rounds "
                               f"({previous[0]} edges left); raise max_iterations")
    if not checkpointed:
        # The result must not depend on a cache released here nor on a long plan: cut it once more.
        current = _truncate(current)
        if cached is not None:
            cached.unpersist()
    log.info("connected components converged after %d rounds", rounds)

    # Converged: each component is a star (smallest node, member). Members get the centre; the
    # centres and the isolated nodes are their own component.
    ids = [edges.select(F.col(SRC).cast(T.LongType()).alias("id")),
           edges.select(F.col(DST).cast(T.LongType()).alias("id"))]
    if nodes is not None:
        ids.append(nodes.select(F.col("id").cast(T.LongType()).alias("id")))
    all_ids = ids[0]
    for more in ids[1:]:
        all_ids = all_ids.union(more)
    all_ids = all_ids.where(F.col("id").isNotNull()).distinct()
    centres = current.select(F.col(DST).alias("id"), F.col(SRC).alias("centre"))
    return (all_ids.join(centres, "id", "left")
            .select("id", F.coalesce(F.col("centre"), F.col("id")).alias("component")))
