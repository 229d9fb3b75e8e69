"""Collapse protection: exact persons for each rule, replayed on one component (no Spark needed)."""

from __future__ import annotations

import datetime as dt
import random

import networkx as nx
import pandas as pd

from cdp.identity_rules import IDENTITY_CAP, UNIQUE_NAMESPACE, replay_component

PRIORITY = {"crm_id": 100, "email": 50, "device": 20, "ecid": 10, "tv": 30}
UNIQUE = {"crm_id", "device"}
# cookie 0, device 1, other types 2 (as transform_members gives them); tv is a device namespace.
TYPE_RANK = {"crm_id": 2, "email": 2, "device": 1, "ecid": 0, "tv": 1}


def day(n: int) -> dt.date:
    return dt.date(2024, 3, 1) + dt.timedelta(days=n)


def frames(identities: dict[int, tuple[str, str, int]], links: list[tuple[int, int, int]],
           hours: dict[int, int] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """identities: node -> (namespace, value, last seen day); links: (a, b, day seen); hours: node -> hour of
    the last sighting on its last seen day (default: none recorded)."""
    hours = hours or {}
    nodes = pd.DataFrame([{"component": 0, "node_id": n, "namespace": ns, "value": v, "type_rank": TYPE_RANK[ns],
                           "priority": PRIORITY[ns], "unique": ns in UNIQUE, "first_seen": day(0),
                           "last_seen": day(seen),
                           "last_seen_ts": pd.Timestamp(day(seen)) + pd.Timedelta(hours=hours[n]) if n in hours
                           else None}
                          for n, (ns, v, seen) in identities.items()])
    edges = pd.DataFrame([{"component": 0, "src": min(a, b), "dst": max(a, b), "seen_date": day(d),
                           "seen_ts": pd.Timestamp(day(d))} for a, b, d in links])
    return nodes, edges


def persons(out: pd.DataFrame, identities: dict[int, tuple[str, str, int]]) -> set[frozenset[str]]:
    members = out[out["reason"].isna()]
    groups: dict[int, set[str]] = {}
    for n, label in zip(members["node_id"], members["label"], strict=True):
        groups.setdefault(int(label), set()).add(identities[int(n)][1])
    return {frozenset(g) for g in groups.values()}


def dropped(out: pd.DataFrame) -> list[tuple[str, str, str | None]]:
    rows = out[out["reason"].notna()]
    return [(r.reason, r.value, None if pd.isna(r.other_value) else r.other_value) for r in rows.itertuples()]


def test_shared_device_follows_its_most_recent_person() -> None:
    ids = {1: ("crm_id", "C1", 1), 2: ("crm_id", "C2", 3), 3: ("device", "D", 3), 4: ("ecid", "K1", 1)}
    out = replay_component(*frames(ids, [(1, 3, 1), (2, 3, 3), (1, 4, 1)]), cap=50)
    assert persons(out, ids) == {frozenset({"C1", "K1"}), frozenset({"C2", "D"})}
    assert dropped(out) == [(UNIQUE_NAMESPACE, "C1", "D")]
    assert out.loc[out["reason"].notna(), "detail"].tolist() == [
        "would put crm_id 'C1' and 'C2' in one person; a newer link kept them apart"]


def test_shared_generic_email_does_not_merge_two_crm_ids() -> None:
    ids = {1: ("crm_id", "C1", 2), 2: ("crm_id", "C2", 5), 3: ("email", "test@test.com", 5),
           4: ("email", "c1@x.com", 2)}
    out = replay_component(*frames(ids, [(1, 3, 2), (1, 4, 2), (2, 3, 5)]), cap=50)
    assert persons(out, ids) == {frozenset({"C1", "c1@x.com"}), frozenset({"C2", "test@test.com"})}
    assert dropped(out) == [(UNIQUE_NAMESPACE, "C1", "test@test.com")]


def test_conflict_through_a_chain_drops_only_the_oldest_link() -> None:
    # C1 - e1 - K - e2 - C2: the oldest link on the path (e1 - K) goes, everything else stays.
    ids = {1: ("crm_id", "C1", 4), 2: ("email", "e1", 4), 3: ("ecid", "K", 4), 4: ("email", "e2", 4),
           5: ("crm_id", "C2", 4)}
    out = replay_component(*frames(ids, [(1, 2, 4), (2, 3, 1), (3, 4, 3), (4, 5, 2)]), cap=50)
    assert persons(out, ids) == {frozenset({"C1", "e1"}), frozenset({"K", "e2", "C2"})}
    assert dropped(out) == [(UNIQUE_NAMESPACE, "e1", "K")]


def test_identity_cap_drops_the_oldest_of_the_lowest_priority_first() -> None:
    ids = {1: ("crm_id", "C1", 0), 2: ("email", "a@x.com", 0), 3: ("ecid", "K_old", 1), 4: ("ecid", "K_new", 5),
           5: ("ecid", "K_mid", 3)}
    out = replay_component(*frames(ids, [(1, 2, 1), (1, 3, 1), (1, 4, 1), (2, 5, 1)]), cap=3)
    # Cookies go first, least recently seen first: K_old then K_mid; each becomes a person of its own.
    assert persons(out, ids) == {frozenset({"C1", "a@x.com", "K_new"}), frozenset({"K_old"}), frozenset({"K_mid"})}
    assert dropped(out) == [(IDENTITY_CAP, "K_old", None), (IDENTITY_CAP, "K_mid", None)]


def test_identity_cap_goes_by_type_then_priority_then_last_seen_never_by_value() -> None:
    # Value order contradicts age everywhere: "a-..." are the oldest, "z-..." the newest.
    ids = {1: ("crm_id", "C1", 0),
           2: ("ecid", "z-cookie", 6), 3: ("ecid", "a-cookie", 2),  # cookies first, older first
           4: ("tv", "a-tv", 1), 5: ("device", "z-device", 1),  # devices next: device (priority 20) before tv (30)
           6: ("email", "a@x.com", 0),  # e-mails last, although seen longest ago
           7: ("ecid", "m-cookie", 6), 8: ("ecid", "b-cookie", 6)}  # same day: the earlier record time goes first
    links = [(1, n, 1) for n in range(2, 9)]
    out = replay_component(*frames(ids, links, hours={7: 18, 8: 9, 2: 20}), cap=3)
    assert dropped(out) == [(IDENTITY_CAP, "a-cookie", None), (IDENTITY_CAP, "b-cookie", None),
                            (IDENTITY_CAP, "m-cookie", None), (IDENTITY_CAP, "z-cookie", None),
                            (IDENTITY_CAP, "z-device", None)]
    assert persons(out, ids) == {frozenset({"C1", "a@x.com", "a-tv"}), *[frozenset({v}) for v in
                                 ("a-cookie", "b-cookie", "m-cookie", "z-cookie", "z-device")]}
    assert out.loc[out["reason"].notna(), "detail"].iloc[0] == (
        "person above 3 identities: cookies go first, then devices, then the lowest priority, the least recently "
        "seen first")


def test_cap_eviction_of_a_bridge_splits_the_rest() -> None:
    ids = {1: ("email", "a", 5), 2: ("ecid", "bridge", 0), 3: ("email", "b", 5)}
    out = replay_component(*frames(ids, [(1, 2, 1), (2, 3, 1)]), cap=2)
    assert persons(out, ids) == {frozenset({"a"}), frozenset({"bridge"}), frozenset({"b"})}


def test_without_conflicts_the_component_is_kept_whole_on_random_graphs() -> None:
    rng = random.Random(7)
    for _ in range(20):
        n = rng.randrange(2, 40)
        ids = {i: ("email", f"e{i}", rng.randrange(5)) for i in range(n)}
        links = [(rng.randrange(n), rng.randrange(n), rng.randrange(5)) for _ in range(n)]
        links = [(a, b, d) for a, b, d in links if a != b]
        graph = nx.Graph()
        graph.add_nodes_from(ids)
        graph.add_edges_from((a, b) for a, b, _ in links)
        expected = {frozenset(f"e{i}" for i in c) for c in nx.connected_components(graph)}
        nodes, edges = frames(ids, links)
        if edges.empty:
            edges = pd.DataFrame(columns=["component", "src", "dst", "seen_date", "seen_ts"])
        assert persons(replay_component(nodes, edges, cap=1000), ids) == expected


def test_unique_rule_holds_on_random_graphs() -> None:
    rng = random.Random(11)
    for _ in range(20):
        n = rng.randrange(3, 40)
        ids = {i: (("crm_id", "email", "ecid")[rng.randrange(3)], f"v{i}", 0) for i in range(n)}
        links = [(a, b, rng.randrange(9)) for a, b in ((rng.randrange(n), rng.randrange(n)) for _ in range(2 * n))
                 if a != b]
        if not links:
            continue
        out = replay_component(*frames(ids, links), cap=1000)
        members = out[out["reason"].isna()]
        crm_per_person = members.assign(crm=[ids[int(x)][0] == "crm_id" for x in members["node_id"]]) \
            .groupby("label")["crm"].sum()
        assert crm_per_person.max() <= 1
        kept = len(links) - len(dropped(out))
        assert kept >= 0 and len(members) == n


def test_64_bit_node_ids_come_back_exact() -> None:
    big = {-3114138944402160295: ("crm_id", "C1", 1), -4662776370221290907: ("crm_id", "C2", 2),
           -2405234110122042675: ("email", "e", 2)}
    nodes, edges = frames(big, [(-3114138944402160295, -2405234110122042675, 1),
                                (-4662776370221290907, -2405234110122042675, 2)])
    out = replay_component(nodes, edges, cap=50)
    members = out[out["reason"].isna()]
    assert dict(zip(members["node_id"].tolist(), members["label"].tolist(), strict=True)) == {
        -4662776370221290907: -4662776370221290907, -3114138944402160295: -3114138944402160295,
        -2405234110122042675: -4662776370221290907}
