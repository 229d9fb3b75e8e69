"""Guardrails that hold together (each value's own range is declared on the model, see Guardrails)."""

from __future__ import annotations

from cdp.errors import WorkspaceProblem
from cdp.workspace.checks.base import CheckContext
from cdp.workspace.workspace import Workspace


def check(ws: Workspace, ctx: CheckContext) -> list[WorkspaceProblem]:
    """A record may not carry more identities than a whole graph may hold."""
    g = ws.config.guardrails
    if g.max_identities_per_record > g.max_identities_per_graph:
        return [WorkspaceProblem("workspace.yaml", "guardrails.max_identities_per_record",
                                 f"{g.max_identities_per_record} is more than guardrails.max_identities_per_graph "
                                 f"({g.max_identities_per_graph}): one record would overflow its person's graph; "
                                 "lower it or raise the graph cap")]
    return []
