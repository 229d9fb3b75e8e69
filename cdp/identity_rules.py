"""Collapse protection: the rules that keep one person's identity graph plausible.

Plain connected components would merge whole populations through one shared value (a family
tablet, ``test@test.com``). Two rules apply, *only* inside the components that break one of them
(the others keep their connected component as is, so the cost stays close to plain components):

1. ``unique`` namespaces: a person holds at most one value of a unique namespace (a CRM id). The
   component's links are replayed newest first (link time: the latest batch date, then record
   time, it was seen on) into a union-find; a link that would put two values of a unique namespace
   in one person is dropped. A device shared by two persons follows the most recent one; a generic
   email used by two CRM ids stays with the most recent and does not merge them.
2. the identity cap: a person holds at most ``max_identities_per_graph`` identities. Beyond it, the
   lowest types go first (cookies, then devices, then the other types), within a type the lowest
   namespace priority, and among those the least recently seen first (last batch date, then record
   time; never the order of the values, which only breaks exact ties); each one dropped becomes a
   person of its own (and what is left may split where it was a bridge).

Every dropped link and identity is returned with its reason for the audit table.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

UNIQUE_NAMESPACE = "unique_namespace"
IDENTITY_CAP = "identity_cap"
# Not a collapse rule but recorded in the same audit: a link not seen again within its TTL.
LINK_EXPIRED = "link_expired"

# The identity cap drops the lowest types first (the reference: cookie, then device), then by priority.
TYPE_RANK = {"cookie": 0, "device": 1}
OTHER_TYPE_RANK = 2

# What the per-component replay returns: one ``label`` row per node (the smallest node id of its
# person), then one row per dropped link or identity (``reason`` set).
REPLAYED = T.StructType([
    T.StructField("component", T.LongType(), False),
    T.StructField("node_id", T.LongType(), True),
    T.StructField("label", T.LongType(), True),
    T.StructField("reason", T.StringType(), True),
    T.StructField("namespace", T.StringType(), True),
    T.StructField("value", T.StringType(), True),
    T.StructField("other_namespace", T.StringType(), True),
    T.StructField("other_value", T.StringType(), True),
    T.StructField("seen_date", T.DateType(), True),
    T.StructField("seen_ts", T.TimestampType(), True),
    T.StructField("detail", T.StringType(), True),
])
NODE_COLUMNS = ["component", "node_id", "namespace", "value", "type_rank", "priority", "unique", "first_seen",
                "last_seen", "last_seen_ts"]
EDGE_COLUMNS = ["component", "src", "dst", "seen_date", "seen_ts"]


class _UnionFind:
    """Union-find over node ids; each set also knows its value per unique namespace."""

    def __init__(self, nodes: list[int], unique_values: dict[int, dict[str, str]]) -> None:
        self.parent = {n: n for n in nodes}
        self.unique = {n: dict(unique_values.get(n, {})) for n in nodes}

    def find(self, n: int) -> int:
        root = n
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[n] != root:  # path compression
            self.parent[n], n = root, self.parent[n]
        return root

    def conflict(self, a: int, b: int) -> tuple[str, str, str] | None:
        """(namespace, value in a's set, value in b's set) when merging the sets would break uniqueness."""
        ua, ub = self.unique[a], self.unique[b]
        for ns in sorted(ua.keys() & ub.keys()):
            if ua[ns] != ub[ns]:
                return ns, ua[ns], ub[ns]
        return None

    def union(self, a: int, b: int) -> None:
        keep, gone = (a, b) if a < b else (b, a)
        self.parent[gone] = keep
        self.unique[keep].update(self.unique.pop(gone))


def _components(nodes: list[int], edges: list[tuple[int, int]]) -> dict[int, int]:
    """node -> smallest node of its component, over ``edges`` restricted to ``nodes``."""
    uf = _UnionFind(nodes, {})
    for a, b in edges:
        ra, rb = uf.find(a), uf.find(b)
        if ra != rb:
            uf.union(ra, rb)
    return {n: uf.find(n) for n in nodes}


def replay_component(nodes: pd.DataFrame, edges: pd.DataFrame, cap: int) -> pd.DataFrame:
    """Apply both rules to one component; returns rows shaped as :data:`REPLAYED`.

    ``nodes`` has :data:`NODE_COLUMNS`, ``edges`` :data:`EDGE_COLUMNS` (each undirected link once).
    """
    if nodes.empty:
        return pd.DataFrame(columns=REPLAYED.fieldNames())
    component = int(nodes["component"].iloc[0])
    info = {int(r.node_id): r for r in nodes.itertuples(index=False)}
    ids = sorted(info)
    unique_values = {n: {r.namespace: r.value} for n, r in info.items() if bool(r.unique)}
    uf = _UnionFind(ids, unique_values)
    audit: list[dict[str, object]] = []

    # Rule 1: newest link first; ties in a fixed order so that a rerun drops the same links.
    ordered = edges.sort_values(["seen_date", "seen_ts", "src", "dst"], ascending=[False, False, True, True],
                                na_position="last")
    kept: list[tuple[int, int]] = []
    for e in ordered.itertuples(index=False):
        a, b = int(e.src), int(e.dst)
        ra, rb = uf.find(a), uf.find(b)
        if ra == rb:
            kept.append((a, b))
            continue
        clash = uf.conflict(ra, rb)
        if clash is None:
            uf.union(ra, rb)
            kept.append((a, b))
            continue
        ns, mine, theirs = clash
        audit.append({"reason": UNIQUE_NAMESPACE, "namespace": info[a].namespace, "value": info[a].value,
                      "other_namespace": info[b].namespace, "other_value": info[b].value,
                      "seen_date": e.seen_date, "seen_ts": e.seen_ts,
                      "detail": f"would put {ns} '{mine}' and '{theirs}' in one person; a newer link kept them apart"})

    # Rule 2: persons above the cap lose their lowest-type, lowest-priority, least recently seen identities.
    members: dict[int, list[int]] = {}
    for n in ids:
        members.setdefault(uf.find(n), []).append(n)
    evicted: set[int] = set()
    for group in members.values():
        if len(group) <= cap:
            continue
        order = sorted(group, key=lambda n: _eviction_key(info[n]))
        for n in order[:len(group) - cap]:
            evicted.add(n)
            audit.append({"reason": IDENTITY_CAP, "namespace": info[n].namespace, "value": info[n].value,
                          "seen_date": info[n].last_seen,
                          "detail": f"person above {cap} identities: cookies go first, then devices, then the "
                                    "lowest priority, the least recently seen first"})
    if evicted:
        remaining = [n for n in ids if n not in evicted]
        labels = _components(remaining, [(a, b) for a, b in kept if a not in evicted and b not in evicted])
        labels.update({n: n for n in evicted})
    else:
        labels = {n: uf.find(n) for n in ids}

    columns: dict[str, object] = {"component": pd.array([component] * (len(ids) + len(audit)), dtype="Int64"),
                                  # Nullable integers built from Python ints: through float64 (pandas' type
                                  # for numbers next to nulls) 64-bit node ids would be rounded.
                                  "node_id": pd.array(ids + [None] * len(audit), dtype="Int64"),
                                  "label": pd.array([labels[n] for n in ids] + [None] * len(audit), dtype="Int64")}
    for name in REPLAYED.fieldNames()[3:]:
        columns[name] = [None] * len(ids) + [row.get(name) for row in audit]
    out = pd.DataFrame(columns)
    return out


def _day(value: object) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.min


def _time(value: object) -> tuple[int, pd.Timestamp | None]:
    """A sortable record time: a missing one (None, NaT) sorts first, as the least recently seen."""
    if value is None or pd.isna(value):
        return 0, None
    return 1, pd.Timestamp(value)


def _eviction_key(node: Any) -> tuple[object, ...]:
    """The order in which the identity cap drops identities: first the lowest type, then the lowest priority,
    then the least recently seen (batch date, then record time), then the first seen; the namespace and value
    only break exact ties, so that a rerun drops the same identities."""
    return (node.type_rank, node.priority, _day(node.last_seen), _time(node.last_seen_ts), _day(node.first_seen),
            node.namespace, node.value)


def _replay_groups(cap: int) -> object:
    def replay(nodes: pd.DataFrame, edges: pd.DataFrame) -> pd.DataFrame:
        return replay_component(nodes, edges, cap)
    return replay


def offending_components(members: DataFrame, cap: int) -> DataFrame:
    """``component`` of every component above the cap or holding two values of a unique namespace.

    ``members`` has ``component``, ``namespace``, ``unique``.
    """
    too_big = members.groupBy("component").count().where(F.col("count") > cap).select("component")
    doubled = (members.where(F.col("unique")).groupBy("component", "namespace").count()
               .where(F.col("count") > 1).select("component"))
    return too_big.union(doubled).distinct()


def transform_collapse(members: DataFrame, edges: DataFrame, cap: int) -> DataFrame:
    """Replay the offending components (see the module docstring); rows shaped as :data:`REPLAYED`.

    ``members`` has :data:`NODE_COLUMNS`; ``edges`` has ``src``, ``dst``, ``seen_date``, ``seen_ts``
    (each undirected link once). Components that break no rule are not in the result.
    """
    offending = offending_components(members, cap)
    nodes = members.join(offending, "component").select(*NODE_COLUMNS)
    located = members.select(F.col("node_id").alias("src"), "component").join(offending, "component")
    # A fresh column for the grouping key: both sides of the cogroup otherwise share members' column.
    links = edges.join(located, "src").select(F.col("component").alias("component"), *EDGE_COLUMNS[1:])
    return (nodes.groupBy("component").cogroup(links.groupBy("component"))
            .applyInPandas(_replay_groups(cap), REPLAYED))  # type: ignore[arg-type]

