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

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components as scipy_components

from bench.measure import measure
from cdp.graph import connected_components

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


def bench_identity(spark: SparkSession, work: Path, identities: int) -> dict[str, float]:
    """Time our components and scipy's on one generated graph; check the partitions are the same."""
    ids, src, dst = random_identity_graph(identities)
    edges_path = work / f"identity-edges-{identities}"
    nodes_path = work / f"identity-nodes-{identities}"
    pd.DataFrame({"src": ids[src], "dst": ids[dst]}).to_parquet(edges_path.with_suffix(".parquet"))
    pd.DataFrame({"id": ids}).to_parquet(nodes_path.with_suffix(".parquet"))

    started = time.perf_counter()
    graph = coo_matrix((np.ones(len(src), dtype=np.int8), (src, dst)), shape=(identities, identities)).tocsr()
    count, labels = scipy_components(graph, directed=False)
    scipy_seconds = time.perf_counter() - started

    edges = spark.read.parquet(str(edges_path.with_suffix(".parquet")))
    nodes = spark.read.parquet(str(nodes_path.with_suffix(".parquet")))
    with measure() as m:
        result = pd.DataFrame(connected_components(edges, nodes).toPandas())
    ours = dict(zip(result["id"].to_numpy(), result["component"].to_numpy(), strict=True))
    # Same partition: each scipy component maps to exactly one of ours, and the counts agree.
    ours_of_node = np.array([ours[i] for i in ids.tolist()])
    pairs = pd.DataFrame({"scipy": labels, "ours": ours_of_node}).drop_duplicates()
    matches = len(result) == identities and len(pairs) == count == pairs["ours"].nunique()
    if not matches:
        raise AssertionError(f"connected components differ from scipy on {identities} identities")
    log.info("identity %d: ours %.1fs, scipy %.2fs, %d components", identities, m.seconds, scipy_seconds, count)
    return {"identities": identities, "links": len(src), "components": count,
            "ours_seconds": round(m.seconds, 1), "scipy_seconds": round(scipy_seconds, 2),
            "ratio": round(m.seconds / scipy_seconds, 1), "partitions_match": matches,
            "peak_rss_mib": round(m.peak_rss_mib)}
