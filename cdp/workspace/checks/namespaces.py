"""Identity namespaces that schemas and destinations name are declared.

One root cause, one problem: every reference to the same undeclared namespace is reported once, at
the first reference, naming the others; references to a namespace whose entry in namespaces.yaml is
itself broken are not reported at all (that entry's problem is).
"""

from __future__ import annotations

from cdp.errors import WorkspaceProblem
from cdp.workspace.checks.base import CheckContext, defined
from cdp.workspace.workspace import Workspace


def references(ws: Workspace) -> list[tuple[str, str, str]]:
    """(namespace, file, key) of every namespace reference, in file order: schemas, then destinations."""
    found: list[tuple[str, str, str]] = []
    for schema in ws.schemas.values():
        rel = ws.files[f"schemas/{schema.name}"]
        for f in schema.identity_fields:
            assert f.identity is not None
            found.append((f.identity.namespace, rel, f"fields.{f.name}.identity.namespace"))
    for dest in ws.destinations.values():
        rel = ws.files[f"destinations/{dest.name}"]
        for i, mapped in enumerate(dest.mapping):
            if mapped.namespace is not None:
                found.append((mapped.namespace, rel, f"mapping.{i}.source"))
        if dest.deduplication is not None and dest.deduplication.namespace is not None:
            found.append((dest.deduplication.namespace, rel, "deduplication.namespace"))
    return found


def check(ws: Workspace, ctx: CheckContext) -> list[WorkspaceProblem]:
    """One problem per undeclared namespace name."""
    unknown: dict[str, list[tuple[str, str]]] = {}
    for name, rel, key in references(ws):
        if name not in ws.namespaces and not ws.is_broken("namespaces", name):
            unknown.setdefault(name, []).append((rel, key))
    problems = []
    for name, places in unknown.items():
        (rel, key), others = places[0], places[1:]
        also = f"; also named by {', '.join(f'{r}: {k}' for r, k in others)}" if others else ""
        problems.append(WorkspaceProblem(rel, key, f"namespace '{name}' is not declared in namespaces.yaml "
                                         f"(declared: {defined(ws.namespaces)}){also}"))
    return problems
