"""What one run of ``cdp_daily`` works on, from its trigger Params: checked against the workspace at run time.

The Params are typed in the DAG (arrays of names); whether the names exist is known only once the workspace
is loaded, on the worker. A name that is not in the workspace fails the run at once (a retry cannot fix it),
naming the Param, the unknown name and what the workspace defines.

Selection happens at the destinations: audience evaluation always evaluates every audience, because each
audience's statuses (realized / existing / exited) are relative to the previous day's complete snapshot;
evaluating a subset would make the others' members look new, or gone, on the next day.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from cdp.workspace.cadence import dag_id, is_own_cadence
from cdp.workspace.loader import Workspace


def _names(params: Mapping[str, Any], key: str) -> list[str]:
    value = params.get(key) or []
    if isinstance(value, str):  # a CLI trigger may pass one name as a string
        value = [value]
    return [str(v).strip() for v in value if str(v).strip()]


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def _unknown(param: str, kind: str, chosen: list[str], defined: Iterable[str]) -> None:
    known = sorted(defined)
    missing = [n for n in chosen if n not in known]
    if missing:
        raise AirflowFailException(f"Param {param}: unknown {kind} {_quoted(missing)} (the workspace defines: "
                                   f"{', '.join(known)}); trigger the run again with names from that list")


def selected_destinations(ws: Workspace, params: Mapping[str, Any]) -> list[str]:
    """The destinations this run exports to, sorted: those named by the Param ``destinations`` (all when
    empty, but those with a ``schedule`` of their own) that map one of the audiences of the Param ``audiences``
    (any when empty).

    Raises AirflowFailException for a name the workspace does not define, an audience that none of the
    chosen destinations maps, and a ``full_resync`` destination that the run does not export to.
    """
    audiences = _names(params, "audiences")
    destinations = _names(params, "destinations")
    resync = _names(params, "full_resync")
    _unknown("audiences", "audience(s)", audiences, ws.audiences)
    _unknown("destinations", "destination(s)", destinations, ws.destinations)
    _unknown("full_resync", "destination(s)", resync, ws.destinations)
    # Destinations with a schedule of their own run as their own DAGs (dags/cdp_activate.py), never with the daily run.
    own = {name: str(d.schedule) for name, d in ws.destinations.items() if is_own_cadence(d.schedule)}
    elsewhere = [d for d in destinations if d in own]
    if elsewhere:
        raise AirflowFailException(
            f"Param destinations: {_quoted(elsewhere)} run(s) on a schedule of their own ("
            + ", ".join(f"{d}: {own[d]}, DAG {dag_id(d)}" for d in elsewhere)
            + "), not with cdp_daily; trigger that DAG instead, or leave them out")
    chosen = destinations or sorted(d for d in ws.destinations if d not in own)
    if audiences:
        unmapped = [a for a in audiences if not any(a in ws.destinations[d].audiences for d in chosen)]
        if unmapped:
            raise AirflowFailException(
                f"Param audiences: {_quoted(unmapped)} mapped to none of the destinations of this run "
                f"({', '.join(chosen)}); add a destination that maps it to the Param destinations, or leave it out")
        chosen = [d for d in chosen if set(audiences) & set(ws.destinations[d].audiences)]
    outside = [d for d in resync if d not in chosen]
    if outside:
        raise AirflowFailException(
            f"Param full_resync: {_quoted(outside)} not exported by this run (it exports: {', '.join(chosen)}); "
            "add it to the Param destinations, or leave it out")
    return sorted(chosen)
