"""Identity resolution benchmark: our Spark connected components against scipy on the same random graph.

The graph imitates an identity graph: identities (64-bit hashed node ids) grouped into persons of
1 to 6 identities chained together, plus 1% random links between persons (shared devices and
e-mails) that glue some persons into larger components. ``scipy.sparse.csgraph.connected_components``
on one machine, in memory, is the lower bound; the partitions must be identical.

GraphFrames' ``connectedComponents`` is not compared: no GraphFrames build for Spark 4 / Scala 2.13
resolves from Maven Central on this machine (io.graphframes:graphframes-spark4_2.13 0.10.0, 0.11.0,
0.12.1 and org.graphframes:graphframes-spark4_2.13 0.10.0: "could not find artifact").
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components as scipy_components

from bench.measure import measure
from cdp.graph import connected_components
from jobs.resolve_identities import PreviousRun, incremental_components, transform_merge_links, transform_merge_nodes

log = logging.getLogger(__name__)


def random_identity_graph(identities: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(node ids, src index, dst index)``: ``identities`` nodes, persons of 1-6 chained identities,
    plus 1% random cross links. Indices are positions in the node id array."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 7, size=identities // 3 + 1)
    person = np.repeat(np.arange(len(sizes)), sizes)[:identities]
    order = rng.permutation(identities)  # node index of the k-th identity in person order
    same = person[1:] == person[:-1]
    src, dst = order[:-1][same], order[1:][same]
    cross = identities // 100
    src = np.concatenate([src, rng.integers(0, identities, cross)])
    dst = np.concatenate([dst, rng.integers(0, identities, cross)])
    ids = rng.choice(np.iinfo(np.int64).max, size=identities, replace=False) - np.iinfo(np.int64).max // 2
    return ids.astype(np.int64), src, dst


def changed_links(links0: pd.DataFrame, identities: int, share: float = 0.01,
                  seed: int = 2) -> tuple[pd.Series, pd.DataFrame, np.ndarray]:
    """The next day's change: ``share`` of the links change, half of them expiring (the mask over ``links0``),
    half added (``(src, dst)`` node indices, a fifth of them reaching new identities, whose indices follow the
    ``identities`` existing ones: the third element)."""
    rng = np.random.default_rng(seed)
    changed = max(2, int(len(links0) * share))
    expiring = pd.Series(False, index=links0.index)
    expiring.iloc[rng.choice(len(links0), changed // 2, replace=False)] = True
    added = changed - changed // 2
    fresh = max(1, added // 5)
    add_src = rng.integers(0, identities, added)
    add_dst = np.concatenate([rng.integers(0, identities + fresh, added - fresh),
                              np.arange(identities, identities + fresh)])
    return expiring, pd.DataFrame({"src": add_src, "dst": add_dst}), np.arange(identities, identities + fresh)


def _write(work: Path, name: str, frame: pd.DataFrame) -> str:
    path = work / f"{name}.parquet"
    frame.to_parquet(path)
    return str(path)


def _scipy(n: int, src: np.ndarray, dst: np.ndarray) -> tuple[int, np.ndarray, float]:
    started = time.perf_counter()
    graph = coo_matrix((np.ones(len(src), dtype=np.int8), (src, dst)), shape=(n, n)).tocsr()
    count, labels = scipy_components(graph, directed=False)
    return count, labels, time.perf_counter() - started


def _same_partition(result: pd.DataFrame, ids: np.ndarray, labels: np.ndarray, count: int) -> bool:
    """Each scipy component maps to exactly one of ours, and the counts agree."""
    expected = pd.DataFrame({"id": ids, "scipy": labels})
    pairs = expected.merge(result, on="id", how="left")[["scipy", "component"]].drop_duplicates()
    return (len(result) == len(ids) and not pairs["component"].isna().any()
            and len(pairs) == count == pairs["component"].nunique())


def bench_identity(spark: SparkSession, work: Path, identities: int) -> dict[str, float]:
    """Time our components and scipy's on one generated graph (the partitions must be the same); then change
    1% of the links (half expire, half are new) and time a full run against the incremental run of the job
    (same answer required)."""
    day0, day1 = dt.date(2026, 11, 26), dt.date(2026, 11, 27)
    ids, src, dst = random_identity_graph(identities)
    count, labels, scipy_seconds = _scipy(identities, src, dst)
    edges = spark.read.parquet(_write(work, f"identity-edges-{identities}", pd.DataFrame({"src": ids[src],
                                                                                        "dst": ids[dst]})))
    nodes = spark.read.parquet(_write(work, f"identity-nodes-{identities}", pd.DataFrame({"id": ids})))
    with measure() as m:
        computed = connected_components(edges, nodes).localCheckpoint(eager=True)
    result = pd.DataFrame(computed.toPandas())  # not timed: bringing 1M rows to pandas is the check's cost
    if not _same_partition(result, ids, labels, count):
        raise AssertionError(f"connected components differ from scipy on {identities} identities")
    log.info("identity %d: ours %.1fs, scipy %.2fs, %d components", identities, m.seconds, scipy_seconds, count)

    # The previous run as the job stores it: identity map (node, component), nodes and links (half a percent of
    # them expiring on the next day), then the next day's batch: new links, some to new identities.
    links0 = _links(ids[src], ids[dst], day0)
    expiring, added, new_index = changed_links(links0, identities)
    links0["expires_on"] = [day1 if e else None for e in expiring]
    rng = np.random.default_rng(3)
    ids1 = np.concatenate([ids, rng.choice(np.iinfo(np.int64).max // 2, size=len(new_index), replace=False)
                           + np.iinfo(np.int64).max // 2]).astype(np.int64)
    nodes0 = pd.DataFrame({"namespace": "ecid", "value": ids.astype(str), "node_id": ids, "first_seen": day0,
                           "last_seen": day0, "last_seen_ts": pd.Timestamp(day0)})
    previous = PreviousRun(
        day0,
        spark.read.parquet(_write(work, f"identity-map-{identities}", pd.DataFrame({
            "node_id": result["id"], "component": result["component"]}))),
        spark.read.parquet(_write(work, f"identity-links-{identities}", links0))
        .withColumn("expires_on", F.col("expires_on").cast("date")),
        spark.createDataFrame([], "component long, reason string, run_date date"),
        spark.read.parquet(_write(work, f"identity-state-nodes-{identities}", nodes0)))
    day_links = _links(ids1[added["src"].to_numpy()], ids1[added["dst"].to_numpy()], day1)
    ends = np.unique(np.concatenate([day_links["src"].to_numpy(), day_links["dst"].to_numpy()]))
    observed = spark.read.parquet(_write(work, f"identity-observed-{identities}", pd.DataFrame({
        "namespace": "ecid", "value": ends.astype(str), "node_id": ends, "first_seen": day1, "last_seen": day1,
        "last_seen_ts": pd.Timestamp(day1)})))
    observed_links = spark.read.parquet(_write(work, f"identity-links1-{identities}", day_links)).withColumn(
        "expires_on", F.lit(None).cast("date"))
    # The job's own merge: the previous graph plus the day, minus what expired.
    nodes1 = transform_merge_nodes(previous.nodes, observed).localCheckpoint(eager=True)
    alive, gone = transform_merge_links(previous.links, observed_links, day1, day0)
    edges1, expired = alive.localCheckpoint(eager=True), gone.localCheckpoint(eager=True)
    position = pd.Series(np.arange(len(ids1)), index=ids1)
    kept = pd.concat([links0.loc[~expiring, ["src", "dst"]], day_links[["src", "dst"]]]).drop_duplicates()
    count1, labels1, _ = _scipy(len(ids1), position[kept["src"]].to_numpy(), position[kept["dst"]].to_numpy())

    with measure() as full:
        full_computed = connected_components(edges1, nodes1.select(F.col("node_id").alias("id"))
                                             ).localCheckpoint(eager=True)
    with measure() as incremental:
        incremental_computed = incremental_components(observed, nodes1, edges1, expired, previous
                                                      ).localCheckpoint(eager=True)
    full_result = pd.DataFrame(full_computed.toPandas())
    incremental_result = pd.DataFrame(incremental_computed.toPandas())
    for name, frame in (("full", full_result), ("incremental", incremental_result)):
        if not _same_partition(frame, ids1, labels1, count1):
            raise AssertionError(f"{name} run after the change differs from scipy on {identities} identities")
    log.info("identity %d after a 1%% change: full %.1fs, incremental %.1fs", identities, full.seconds,
             incremental.seconds)
    return {"identities": identities, "links": len(src), "components": count,
            "ours_seconds": round(m.seconds, 1), "scipy_seconds": round(scipy_seconds, 2),
            "ours_over_scipy": round(m.seconds / scipy_seconds, 1), "partitions_match": True,
            "changed_links": int(len(src) * 0.01), "full_after_change_s": round(full.seconds, 1),
            "incremental_s": round(incremental.seconds, 1),
            "incremental_over_full": round(incremental.seconds / full.seconds, 2),
            "peak_rss_mib": round(max(m.peak_rss_mib, full.peak_rss_mib, incremental.peak_rss_mib))}


def _links(src: np.ndarray, dst: np.ndarray, day: dt.date) -> pd.DataFrame:
    """Distinct oriented links with their seen date and time, as the job stores them."""
    frame = pd.DataFrame({"src": np.minimum(src, dst), "dst": np.maximum(src, dst)})
    frame = frame[frame["src"] != frame["dst"]].drop_duplicates().reset_index(drop=True)
    frame["seen_date"] = day
    frame["seen_ts"] = pd.Timestamp(day)
    return frame
