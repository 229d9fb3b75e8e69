"""Schemas: fields declared once, names that do not take the platform's columns, one primary identity,
the event fields an event schema needs, and one type per profile attribute across schemas."""

from __future__ import annotations

from cdp.errors import WorkspaceProblem
from cdp.workspace.checks.base import CheckContext, attributes_known
from cdp.workspace.models import FieldSpec, SchemaSpec
from cdp.workspace.workspace import Workspace

# Columns of the profiles table that are not attributes (jobs/build_profiles.py writes them): a profile
# field of the same name would collide with them.
RESERVED_PROFILE_COLUMNS = ("run_date", "profile_id", "identities", "identity_count", "dataset_last_update",
                            "events_in_window")


def _check_schema(ws: Workspace, schema: SchemaSpec) -> list[WorkspaceProblem]:
    rel = ws.files[f"schemas/{schema.name}"]
    problems: list[WorkspaceProblem] = []
    names = [f.name for f in schema.fields]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(WorkspaceProblem(rel, f"fields.{name}", "field is declared twice"))
    if schema.class_ == "profile":
        for name in sorted(set(names) & set(RESERVED_PROFILE_COLUMNS)):
            problems.append(WorkspaceProblem(rel, f"fields.{name}",
                                             f"'{name}' is a column of the profiles table; rename the field"))
    for name in sorted(n for n in set(names) if n.startswith("_")):
        problems.append(WorkspaceProblem(rel, f"fields.{name}",
                                         "names starting with '_' are reserved for the platform's columns"))
    primaries = [f.name for f in schema.fields if f.identity and f.identity.primary]
    if len(primaries) > 1:
        problems.append(WorkspaceProblem(rel, "fields", f"more than one primary identity: {', '.join(primaries)}"))
    if schema.class_ == "profile" and not primaries:
        problems.append(WorkspaceProblem(rel, "fields",
                                         "a profile schema needs one primary identity (identity.primary: true)"))
    if schema.class_ == "event":
        for key, types in (("id_field", {"string"}), ("timestamp_field", {"timestamp"}),
                           ("event_type_field", {"string"})):
            name = getattr(schema, key)
            if name is None:
                problems.append(WorkspaceProblem(rel, key, "is required for an event schema"))
                continue
            declared = schema.field(name)
            if declared is None:
                problems.append(WorkspaceProblem(rel, key, f"field '{name}' is not declared"))
            elif declared.type not in types:
                problems.append(WorkspaceProblem(rel, key, f"field '{name}' must be {' or '.join(types)}"))
            elif not declared.required:
                problems.append(WorkspaceProblem(rel, f"fields.{name}.required", "must be true"))
    if schema.class_ == "profile" and schema.timestamp_field is not None:
        ts_field = schema.field(schema.timestamp_field)
        if ts_field is None or ts_field.type not in ("timestamp", "date"):
            problems.append(WorkspaceProblem(rel, "timestamp_field",
                                             f"'{schema.timestamp_field}' must be a declared timestamp or date field"))
    return problems


def _attribute_types(ws: Workspace) -> list[WorkspaceProblem]:
    """A profile attribute has one type, whichever profile dataset's schema declares it."""
    problems: list[WorkspaceProblem] = []
    attributes: dict[str, tuple[FieldSpec, str]] = {}
    for dataset in ws.profile_datasets:
        for f in ws.schemas[dataset.schema_].fields:
            seen = attributes.get(f.name)
            if seen is not None and seen[0].type != f.type:
                problems.append(WorkspaceProblem(
                    ws.files[f"schemas/{dataset.schema_}"], f"fields.{f.name}.type",
                    f"profile attribute '{f.name}' is {f.type} here but {seen[0].type} in schema '{seen[1]}'"))
            attributes.setdefault(f.name, (f, dataset.schema_))
    return problems


def check(ws: Workspace, ctx: CheckContext) -> list[WorkspaceProblem]:
    """Every schema on its own, then the profile attributes they merge into."""
    problems: list[WorkspaceProblem] = []
    for schema in ws.schemas.values():
        problems.extend(_check_schema(ws, schema))
    if attributes_known(ws):
        problems.extend(_attribute_types(ws))
    return problems
