"""Datasets: the schema exists, identity datasets have identities, the source fits its type."""

from __future__ import annotations

from cdp.errors import WorkspaceProblem
from cdp.workspace.checks.base import CheckContext, defined
from cdp.workspace.workspace import Workspace


def check(ws: Workspace, ctx: CheckContext) -> list[WorkspaceProblem]:
    """Every dataset's schema, identity flag and source type (paths: see the paths check)."""
    problems: list[WorkspaceProblem] = []
    if not ws.datasets and not any(name.startswith("datasets/") for name in ws.broken):
        problems.append(WorkspaceProblem("datasets", "", "no dataset is declared: add one file per dataset "
                                         "(datasets/<name>.yaml) naming its schema, format and source"))
    for dataset in ws.datasets.values():
        rel = ws.files[f"datasets/{dataset.name}"]
        if dataset.schema_ not in ws.schemas:
            if not ws.is_broken("schemas", dataset.schema_):
                problems.append(WorkspaceProblem(rel, "schema", f"schema '{dataset.schema_}' is not defined"
                                                 f" (defined: {defined(ws.schemas)})"))
            continue
        schema = ws.schemas[dataset.schema_]
        if dataset.identity_enabled and not schema.identity_fields:
            problems.append(WorkspaceProblem(rel, "identity_enabled",
                                             f"schema '{schema.name}' declares no identity field"))
        if dataset.source.type == "s3" and not dataset.source.bucket:
            problems.append(WorkspaceProblem(rel, "source.bucket", "is required for source.type s3"))
        elif dataset.source.type == "local" and dataset.source.bucket is not None:
            problems.append(WorkspaceProblem(rel, "source.bucket", "applies to source.type s3 only"))
    return problems
