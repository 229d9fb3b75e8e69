"""Load a workspace folder into typed models and check it as a whole.

Layout of a workspace::

    workspace.yaml          name, merge policy, guardrails
    namespaces.yaml         identity namespaces
    schemas/*.yaml          one schema per file
    datasets/*.yaml         one dataset per file
    audiences/*.yaml        one audience per file
    destinations/*.yaml     one destination per file

Every problem is collected with the file and the key it concerns; :func:`load_workspace` raises
one :class:`~cdp.errors.WorkspaceError` listing all of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from cdp.errors import WorkspaceError, WorkspaceProblem
from cdp.workspace.models import (
    AudienceSpec,
    DatasetSpec,
    DestinationSpec,
    FieldSpec,
    LocalFileDestination,
    Namespace,
    NamespacesFile,
    Rule,
    SchemaSpec,
    WorkspaceFile,
)

M = TypeVar("M", bound=BaseModel)

NUMERIC_TYPES = {"integer", "long", "double", "decimal"}
ORDERED_TYPES = NUMERIC_TYPES | {"date", "timestamp", "string"}
STRING_OPS = {"starts_with", "ends_with", "contains", "regex"}
ORDER_OPS = {"<", "<=", ">", ">=", "between"}


@dataclass(frozen=True)
class Workspace:
    """A loaded, checked workspace."""

    root: Path
    config: WorkspaceFile
    namespaces: dict[str, Namespace]
    schemas: dict[str, SchemaSpec]
    datasets: dict[str, DatasetSpec]
    audiences: dict[str, AudienceSpec]
    destinations: dict[str, DestinationSpec]
    files: dict[str, str] = field(default_factory=dict)  # "datasets/crm" -> relative file name
    # names whose file failed to parse: references to them are not reported again
    broken: frozenset[str] = frozenset()

    def schema_of(self, dataset: str) -> SchemaSpec:
        return self.schemas[self.datasets[dataset].schema_]

    def datasets_of_class(self, class_: str) -> list[DatasetSpec]:
        return [d for d in self.datasets.values() if self.schemas[d.schema_].class_ == class_]

    @property
    def profile_datasets(self) -> list[DatasetSpec]:
        """Profile-record datasets that feed profiles, in file-name order."""
        return [d for d in self.datasets_of_class("profile") if d.profile_enabled]

    @property
    def event_datasets(self) -> list[DatasetSpec]:
        """Experience-event datasets that feed profiles (and so audiences)."""
        return [d for d in self.datasets_of_class("event") if d.profile_enabled]

    @property
    def identity_datasets(self) -> list[DatasetSpec]:
        return [d for d in self.datasets.values() if d.identity_enabled]

    def profile_attributes(self) -> dict[str, FieldSpec]:
        """Merged profile attributes: every field of the profile datasets' schemas, by name."""
        attributes: dict[str, FieldSpec] = {}
        for dataset in self.profile_datasets:
            for f in self.schemas[dataset.schema_].fields:
                attributes.setdefault(f.name, f)
        return attributes

    def event_types(self) -> dict[str, set[str] | None]:
        """Declared event types per event dataset (None where the schema declares no enumeration)."""
        out: dict[str, set[str] | None] = {}
        for dataset in self.event_datasets:
            schema = self.schemas[dataset.schema_]
            type_field = schema.field(schema.event_type_field or "")
            out[dataset.name] = set(type_field.enum) if type_field and type_field.enum else None
        return out


def _read_yaml(path: Path, root: Path, problems: list[WorkspaceProblem]) -> Any:
    rel = str(path.relative_to(root))
    try:
        with path.open(encoding="utf-8") as handle:
            return yaml.safe_load(handle)
    except yaml.YAMLError as exc:
        problems.append(WorkspaceProblem(rel, "", f"is not valid YAML: {exc}"))
    except OSError as exc:
        problems.append(WorkspaceProblem(rel, "", f"cannot be read: {exc.strerror}"))
    return None


def _parse(model: type[M], data: Any, rel: str, problems: list[WorkspaceProblem]) -> M | None:
    if not isinstance(data, dict):
        problems.append(WorkspaceProblem(rel, "", "must be a YAML mapping"))
        return None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            key = ".".join(str(part) for part in err["loc"])
            message = err["msg"]
            if err["type"] == "extra_forbidden":
                message = "unknown key"
            elif err["type"] == "missing":
                message = "is required"
            problems.append(WorkspaceProblem(rel, key, message))
        return None


def _yaml_files(folder: Path) -> Iterator[Path]:
    if folder.is_dir():
        yield from sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml"))


def load_workspace(root: str | Path) -> Workspace:
    """Load and check the workspace at ``root``; raise WorkspaceError listing every problem."""
    root = Path(root)
    problems: list[WorkspaceProblem] = []
    if not root.is_dir():
        raise WorkspaceError([WorkspaceProblem(str(root), "", "workspace folder does not exist")])

    config = None
    if (root / "workspace.yaml").is_file():
        config = _parse(WorkspaceFile, _read_yaml(root / "workspace.yaml", root, problems), "workspace.yaml",
                        problems)
    else:
        problems.append(WorkspaceProblem("workspace.yaml", "", "is missing"))

    namespaces: dict[str, Namespace] = {}
    if (root / "namespaces.yaml").is_file():
        ns_file = _parse(NamespacesFile, _read_yaml(root / "namespaces.yaml", root, problems),
                         "namespaces.yaml", problems)
        for i, ns in enumerate(ns_file.namespaces if ns_file else []):
            if ns.code in namespaces:
                problems.append(WorkspaceProblem("namespaces.yaml", f"namespaces.{i}.code",
                                                 f"namespace '{ns.code}' is declared twice"))
            namespaces[ns.code] = ns
    else:
        problems.append(WorkspaceProblem("namespaces.yaml", "", "is missing"))

    files: dict[str, str] = {}
    broken: set[str] = set()

    def load_folder(kind: str, model: type[M], key: str) -> dict[str, M]:
        out: dict[str, M] = {}
        for path in _yaml_files(root / kind):
            rel = str(path.relative_to(root))
            data = _read_yaml(path, root, problems)
            item = _parse(model, data, rel, problems)
            if item is None:
                if isinstance(data, dict) and isinstance(data.get(key), str):
                    broken.add(f"{kind}/{data[key]}")
                continue
            name = getattr(item, key)
            if name in out:
                problems.append(WorkspaceProblem(rel, key, f"'{name}' is already defined in {files[f'{kind}/{name}']}"))
                continue
            out[name] = item
            files[f"{kind}/{name}"] = rel
        return out

    schemas = load_folder("schemas", SchemaSpec, "name")
    datasets = load_folder("datasets", DatasetSpec, "name")
    audiences = load_folder("audiences", AudienceSpec, "id")
    destinations = load_folder("destinations", LocalFileDestination, "name")

    if config is None:
        raise WorkspaceError(problems or [WorkspaceProblem("workspace.yaml", "", "is invalid")])

    ws = Workspace(root, config, namespaces, schemas, datasets, audiences, destinations, files, frozenset(broken))
    problems.extend(check_workspace(ws))
    if problems:
        raise WorkspaceError(problems)
    return ws


def check_workspace(ws: Workspace) -> list[WorkspaceProblem]:
    """Cross-file checks: references resolve, types fit operators, identities are declared."""
    problems: list[WorkspaceProblem] = []
    for schema in ws.schemas.values():
        problems.extend(_check_schema(ws, schema))
    for dataset in ws.datasets.values():
        rel = ws.files[f"datasets/{dataset.name}"]
        if dataset.schema_ not in ws.schemas:
            if f"schemas/{dataset.schema_}" in ws.broken:
                continue
            problems.append(WorkspaceProblem(rel, "schema", f"schema '{dataset.schema_}' is not defined"
                                             f" (defined: {', '.join(sorted(ws.schemas)) or 'none'})"))
            continue
        schema = ws.schemas[dataset.schema_]
        if dataset.identity_enabled and not schema.identity_fields:
            problems.append(WorkspaceProblem(rel, "identity_enabled",
                                             f"schema '{schema.name}' declares no identity field"))
        if "{date}" not in dataset.source.path:
            problems.append(WorkspaceProblem(rel, "source.path",
                                             "must contain {date} so that each run reads its own day"))
    # Attribute checks need every schema and dataset: with one of them broken, they would report
    # its fields as unknown everywhere. The broken file's own problems come first; fix, then re-check.
    attributes_known = not any(d.schema_ not in ws.schemas for d in ws.datasets.values()) and not any(
        name.startswith(("schemas/", "datasets/")) for name in ws.broken)
    for dest in ws.destinations.values():
        rel = ws.files[f"destinations/{dest.name}"]
        for i, audience_id in enumerate(dest.audiences):
            if audience_id not in ws.audiences and f"audiences/{audience_id}" not in ws.broken:
                problems.append(WorkspaceProblem(rel, f"audiences.{i}", f"audience '{audience_id}' is not defined"))
    if not attributes_known:
        return problems

    attributes: dict[str, tuple[FieldSpec, str]] = {}
    for dataset in ws.profile_datasets:
        for f in ws.schemas[dataset.schema_].fields:
            seen = attributes.get(f.name)
            if seen is not None and seen[0].type != f.type:
                problems.append(WorkspaceProblem(
                    ws.files[f"schemas/{dataset.schema_}"], f"fields.{f.name}.type",
                    f"profile attribute '{f.name}' is {f.type} here but {seen[0].type} in schema '{seen[1]}'"))
            attributes.setdefault(f.name, (f, dataset.schema_))

    for audience in ws.audiences.values():
        problems.extend(_check_rule(ws, audience.rule, ws.files[f"audiences/{audience.id}"], "rule"))

    for dest in ws.destinations.values():
        rel = ws.files[f"destinations/{dest.name}"]
        headers: set[str] = set()
        for i, mapped in enumerate(dest.mapping):
            if mapped.namespace is not None:
                if mapped.namespace not in ws.namespaces:
                    problems.append(WorkspaceProblem(rel, f"mapping.{i}.source",
                                                     f"identity namespace '{mapped.namespace}' is not defined"))
            elif mapped.source not in attributes:
                problems.append(WorkspaceProblem(rel, f"mapping.{i}.source",
                                                 f"attribute '{mapped.source}' is not a profile attribute"))
            if mapped.header in headers:
                problems.append(WorkspaceProblem(rel, f"mapping.{i}.name", f"column '{mapped.header}' appears twice"))
            headers.add(mapped.header)
    return problems


def _check_schema(ws: Workspace, schema: SchemaSpec) -> list[WorkspaceProblem]:
    rel = ws.files[f"schemas/{schema.name}"]
    problems: list[WorkspaceProblem] = []
    names = [f.name for f in schema.fields]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(WorkspaceProblem(rel, f"fields.{name}", "field is declared twice"))
    primaries = [f.name for f in schema.fields if f.identity and f.identity.primary]
    if len(primaries) > 1:
        problems.append(WorkspaceProblem(rel, "fields", f"more than one primary identity: {', '.join(primaries)}"))
    for f in schema.identity_fields:
        assert f.identity is not None
        if f.identity.namespace not in ws.namespaces:
            problems.append(WorkspaceProblem(rel, f"fields.{f.name}.identity.namespace",
                                             f"namespace '{f.identity.namespace}' is not declared in namespaces.yaml"))
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


def _check_rule(ws: Workspace, rule: Rule, rel: str, path: str) -> list[WorkspaceProblem]:
    problems: list[WorkspaceProblem] = []
    for key, children in (("all", rule.all), ("any", rule.any)):
        for i, child in enumerate(children or []):
            problems.extend(_check_rule(ws, child, rel, f"{path}.{key}.{i}"))
    if rule.not_ is not None:
        problems.extend(_check_rule(ws, rule.not_, rel, f"{path}.not"))
    condition = rule.attribute_condition
    if condition is not None:
        attributes = ws.profile_attributes()
        spec = attributes.get(condition.attribute)
        if spec is None:
            problems.append(WorkspaceProblem(rel, f"{path}.attribute",
                                             f"unknown attribute '{condition.attribute}'"
                                             f" (profile attributes: {', '.join(sorted(attributes))})"))
        elif condition.op in STRING_OPS and spec.type != "string":
            problems.append(WorkspaceProblem(
                rel, f"{path}.op", f"'{condition.op}' needs a string attribute; '{spec.name}' is {spec.type}"))
        elif condition.op in ORDER_OPS and spec.type not in ORDERED_TYPES:
            problems.append(WorkspaceProblem(rel, f"{path}.op",
                                             f"'{condition.op}' cannot compare {spec.type} attribute '{spec.name}'"))
        elif spec.type in NUMERIC_TYPES and condition.op not in ("exists", "missing"):
            values = condition.value if isinstance(condition.value, list) else [condition.value]
            if any(isinstance(v, bool) or not isinstance(v, int | float) for v in values):
                problems.append(WorkspaceProblem(rel, f"{path}.value",
                                                 f"attribute '{spec.name}' is {spec.type}; the value must be a number"))
    if rule.events is not None:
        event_types = ws.event_types()
        if rule.events.dataset is not None and rule.events.dataset not in event_types:
            problems.append(WorkspaceProblem(rel, f"{path}.events.dataset",
                                             f"'{rule.events.dataset}' is not an event dataset feeding profiles"))
        else:
            scope = [rule.events.dataset] if rule.events.dataset else list(event_types)
            known = [event_types[d] for d in scope]
            if not scope:
                problems.append(WorkspaceProblem(rel, f"{path}.events", "the workspace has no event dataset"))
            elif all(k is not None for k in known) and not any(rule.events.event_type in (k or set()) for k in known):
                declared = sorted(set().union(*[k for k in known if k]))
                problems.append(WorkspaceProblem(rel, f"{path}.events.type",
                                                 f"unknown event type '{rule.events.event_type}'"
                                                 f" (declared: {', '.join(declared)})"))
    return problems
