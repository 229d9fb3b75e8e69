"""Connected components: identical partitions to networkx on random and worst-case graphs."""

from __future__ import annotations

import random
from collections.abc import Iterable

import networkx as nx
import pytest
from pyspark import SparkContext
from pyspark.sql import DataFrame, SparkSession

from cdp.graph import ConvergenceError, connected_components

Edge = tuple[int, int]


def edges_df(spark: SparkSession, edges: Iterable[Edge]) -> DataFrame:
    return spark.createDataFrame(list(edges), "src long, dst long")


def nodes_df(spark: SparkSession, nodes: Iterable[int]) -> DataFrame:
    return spark.createDataFrame([(n,) for n in nodes], "id long")


def expected_labels(edges: list[Edge], nodes: Iterable[int] = ()) -> dict[int, int]:
    """The oracle: every node -> smallest node of its networkx component."""
    graph = nx.Graph()
    graph.add_nodes_from(nodes)
    graph.add_edges_from(edges)
    return {node: min(component) for component in nx.connected_components(graph) for node in component}


def labels(spark: SparkSession, edges: list[Edge], nodes: Iterable[int] | None = None, **kwargs: int) -> dict[int, int]:
    result = connected_components(edges_df(spark, edges), None if nodes is None else nodes_df(spark, nodes), **kwargs)
    assert result.columns == ["id", "component"]
    rows = result.collect()
    assert len(rows) == len({r["id"] for r in rows}), "one row per node"
    return {r["id"]: r["component"] for r in rows}


def relabel(edges: list[Edge], rng: random.Random, span: int = 10**12) -> list[Edge]:
    """The same graph under random, widely spread node ids (so that id order says nothing)."""
    nodes = sorted({n for e in edges for n in e})
    new_ids = rng.sample(range(-span, span), len(nodes))
    mapping = dict(zip(nodes, new_ids, strict=True))
    return [(mapping[a], mapping[b]) for a, b in edges]


def random_sparse(rng: random.Random, n: int = 400, m: int = 320) -> list[Edge]:
    return [(rng.randrange(n), rng.randrange(n)) for _ in range(m)]


def chain(n: int, start: int = 0) -> list[Edge]:
    return [(start + i, start + i + 1) for i in range(n - 1)]


def star(centre: int, leaves: Iterable[int]) -> list[Edge]:
    return [(centre, leaf) for leaf in leaves]


def mixture(rng: random.Random) -> list[Edge]:
    """Chains, stars, dense clusters and random bits, on disjoint id ranges, shuffled together."""
    edges = chain(60, start=0) + star(1_099, range(1_000, 1_099)) + star(2_000, range(2_001, 2_050))
    cluster = list(range(3_000, 3_030))
    edges += [(a, b) for a in cluster for b in cluster if a < b and rng.random() < 0.5]
    edges += [(4_000 + rng.randrange(200), 4_000 + rng.randrange(200)) for _ in range(150)]
    edges += [(5_000 + 2 * i, 5_000 + 2 * i + 1) for i in range(40)]  # many pairs
    rng.shuffle(edges)
    return edges


RANDOM_SHAPES = {
    "random_sparse": lambda rng: random_sparse(rng),
    "random_sparse_relabelled": lambda rng: relabel(random_sparse(rng), rng),
    "random_near_threshold": lambda rng: random_sparse(rng, n=300, m=160),
    "chain_shuffled_ids": lambda rng: relabel(chain(300), rng),
    "stars": lambda rng: [e for c in range(10) for e in star(c * 100 + rng.randrange(100),
                                                             range(c * 100, c * 100 + 100))],
    "mixture": mixture,
    "mixture_relabelled": lambda rng: relabel(mixture(rng), rng),
}


@pytest.mark.parametrize("shape", sorted(RANDOM_SHAPES))
@pytest.mark.parametrize("seed", [7, 2024])
def test_random_graphs_match_networkx(spark: SparkSession, shape: str, seed: int) -> None:
    rng = random.Random(seed)
    edges = RANDOM_SHAPES[shape](rng)
    assert labels(spark, edges) == expected_labels(edges)


def test_singletons_duplicates_and_self_loops(spark: SparkSession) -> None:
    edges = [(1, 2), (2, 1), (1, 2), (3, 3), (3, 3), (4, 5), (5, 5)]
    got = labels(spark, edges, nodes=[9, 1, 10, 10])
    assert got == {1: 1, 2: 1, 3: 3, 4: 4, 5: 4, 9: 9, 10: 10}


def test_no_edges_only_nodes(spark: SparkSession) -> None:
    assert labels(spark, [], nodes=[3, 1, 2]) == {1: 1, 2: 2, 3: 3}
    assert labels(spark, []) == {}


def test_negative_and_extreme_ids(spark: SparkSession) -> None:
    big, small = 2**63 - 1, -(2**63)
    edges = [(big, 0), (0, small), (big - 1, big - 2)]
    assert labels(spark, edges) == {big: small, 0: small, small: small, big - 1: big - 2, big - 2: big - 2}


@pytest.mark.parametrize("order", ["ascending", "descending", "zigzag"])
def test_long_path_of_2000_nodes(spark: SparkSession, order: str) -> None:
    n = 2_000
    ids = list(range(n))
    if order == "descending":
        ids.reverse()
    elif order == "zigzag":  # smallest ids at both ends, largest in the middle
        ids = ids[0::2] + ids[1::2][::-1]
    edges = [(ids[i], ids[i + 1]) for i in range(n - 1)]
    got = labels(spark, edges, checkpoint_every=3)
    assert got == dict.fromkeys(range(n), 0)


def test_dense_cluster_and_giant_component(spark: SparkSession) -> None:
    rng = random.Random(11)
    cluster = range(100, 160)
    edges = [(a, b) for a in cluster for b in cluster if a < b]  # complete graph K60
    # A giant component: a random tree over 1,000 nodes hung off the cluster.
    for node in range(1_000, 2_000):
        edges.append((node, rng.choice([rng.randrange(1_000, node) if node > 1_000 else 100, 150])))
    rng.shuffle(edges)
    got = labels(spark, edges)
    assert got == expected_labels(edges)
    assert set(got.values()) == {100}


def test_many_small_components(spark: SparkSession) -> None:
    rng = random.Random(5)
    edges: list[Edge] = []
    for c in range(300):
        base = c * 10
        size = rng.randrange(1, 5)
        edges += [(base + rng.randrange(i + 1), base + i + 1) for i in range(size)]
    rng.shuffle(edges)
    got = labels(spark, edges, nodes=range(5_000, 5_010))
    assert got == expected_labels(edges, nodes=range(5_000, 5_010))


def test_without_checkpoint_directory_uses_local_checkpoints(spark: SparkSession,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SparkContext, "getCheckpointDir", lambda self: None)
    edges = relabel(chain(200), random.Random(3))
    assert labels(spark, edges, checkpoint_every=1) == expected_labels(edges)


def test_max_iterations_is_a_clear_error(spark: SparkSession) -> None:
    with pytest.raises(ConvergenceError, match="did not converge within 1 rounds"):
        connected_components(edges_df(spark, chain(500)), max_iterations=1)


def test_invalid_arguments(spark: SparkSession) -> None:
    with pytest.raises(ValueError, match="checkpoint_every"):
        connected_components(edges_df(spark, [(1, 2)]), checkpoint_every=0)
