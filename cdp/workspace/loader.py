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

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from cdp.errors import WorkspaceError, WorkspaceProblem
from cdp.workspace.models import (
    IMPLICIT_DEFAULT_POLICY,
    AttributeCondition,
    AudienceSpec,
    DatasetSpec,
    DestinationSpec,
    EventCondition,
    FieldSpec,
    LocalFileDestination,
    Namespace,
    NamespacesFile,
    RecencyCondition,
    Rule,
    SchemaSpec,
    SequenceStep,
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


def _regex_error(pattern: str) -> str | None:
    """Why a regex (matched by Spark, whose Java syntax is close to Python's for these) does not compile."""
    try:
        re.compile(pattern)
    except re.error as exc:
        return str(exc)
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
            if ns.pattern is not None and (error := _regex_error(ns.pattern)):
                problems.append(WorkspaceProblem("namespaces.yaml", f"namespaces.{i}.pattern",
                                                 f"is not a valid regular expression: {error}"))
            for j, blocked in enumerate(ns.blocked_patterns):
                if error := _regex_error(blocked):
                    problems.append(WorkspaceProblem("namespaces.yaml", f"namespaces.{i}.blocked_patterns.{j}",
                                                     f"is not a valid regular expression: {error}"))
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
    for i, blocked in enumerate(config.guardrails.blocked_patterns):
        if error := _regex_error(blocked):
            problems.append(WorkspaceProblem("workspace.yaml", f"guardrails.blocked_patterns.{i}",
                                             f"is not a valid regular expression: {error}"))

    problems.extend(_check_merge_policies(config))

    ws = Workspace(root, config, namespaces, schemas, datasets, audiences, destinations, files, frozenset(broken))
    problems.extend(check_workspace(ws))
    if problems:
        raise WorkspaceError(problems)
    return ws


def _check_merge_policies(config: WorkspaceFile) -> list[WorkspaceProblem]:
    """The default merge policy is named once, by default_merge_policy or by the top-level merge_policy keys."""
    rel = "workspace.yaml"
    defined = ", ".join(sorted(config.merge_policies)) or "none"
    if config.default_merge_policy is None:
        if IMPLICIT_DEFAULT_POLICY in config.merge_policies:
            return [WorkspaceProblem(rel, f"merge_policies.{IMPLICIT_DEFAULT_POLICY}",
                                     f"'{IMPLICIT_DEFAULT_POLICY}' names the policy of merge_policy / "
                                     "dataset_precedence: choose another name, or name the default with "
                                     "default_merge_policy")]
        return []
    problems = []
    if config.default_merge_policy not in config.merge_policies:
        problems.append(WorkspaceProblem(rel, "default_merge_policy", f"unknown merge policy "
                                         f"'{config.default_merge_policy}' (merge_policies: {defined})"))
    for key in sorted({"merge_policy", "dataset_precedence"} & config.model_fields_set):
        problems.append(WorkspaceProblem(rel, key, "conflicts with default_merge_policy: describe the default "
                                         "policy in merge_policies instead"))
    return problems


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
        if dataset.source.type == "s3" and not dataset.source.bucket:
            problems.append(WorkspaceProblem(rel, "source.bucket", "is required for source.type s3"))
        elif dataset.source.type == "local" and dataset.source.bucket is not None:
            problems.append(WorkspaceProblem(rel, "source.bucket", "applies to source.type s3 only"))
    # Attribute checks need every schema and dataset: with one of them broken, they would report
    # its fields as unknown everywhere. The broken file's own problems come first; fix, then re-check.
    attributes_known = not any(d.schema_ not in ws.schemas for d in ws.datasets.values()) and not any(
        name.startswith(("schemas/", "datasets/")) for name in ws.broken)
    for dest in ws.destinations.values():
        rel = ws.files[f"destinations/{dest.name}"]
        for i, audience_id in enumerate(dest.audiences):
            if audience_id not in ws.audiences and f"audiences/{audience_id}" not in ws.broken:
                problems.append(WorkspaceProblem(rel, f"audiences.{i}", f"audience '{audience_id}' is not defined"))
    policies = ws.config.policies
    for audience in ws.audiences.values():
        if audience.merge_policy is not None and audience.merge_policy not in policies:
            problems.append(WorkspaceProblem(ws.files[f"audiences/{audience.id}"], "merge_policy",
                                             f"unknown merge policy '{audience.merge_policy}'"
                                             f" (defined: {', '.join(sorted(policies))})"))
    if not attributes_known:
        return problems

    profile_datasets = [d.name for d in ws.profile_datasets]
    precedences = [(f"merge_policies.{name}.datasets", p.datasets) for name, p in ws.config.merge_policies.items()]
    precedences.append(("dataset_precedence", ws.config.dataset_precedence))
    for key, names in precedences:
        for i, name in enumerate(names):
            if name not in profile_datasets:
                problems.append(WorkspaceProblem("workspace.yaml", f"{key}.{i}", f"'{name}' is not a profile "
                                                 f"dataset (profile datasets: {', '.join(profile_datasets)})"))

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
    problems.extend(audience_cycles(ws))

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
        problems.extend(_check_attribute_condition(ws, condition, rel, path))
    if rule.audience is not None and rule.audience not in ws.audiences \
            and f"audiences/{rule.audience}" not in ws.broken:
        problems.append(WorkspaceProblem(rel, f"{path}.audience", f"unknown audience '{rule.audience}'"
                                         f" (defined: {', '.join(sorted(ws.audiences)) or 'none'})"))
    steps: list[tuple[str, EventCondition | RecencyCondition | SequenceStep | None]] = [
        ("events", rule.events), ("last_event", rule.last_event)]
    if rule.sequence is not None:
        steps += [("sequence.first", rule.sequence.first), ("sequence.then", rule.sequence.then),
                  ("sequence.not_between", rule.sequence.not_between)]
    for kind, event in steps:
        if event is None:
            continue
        event_types = ws.event_types()
        if event.dataset is not None and event.dataset not in event_types:
            problems.append(WorkspaceProblem(rel, f"{path}.{kind}.dataset",
                                             f"'{event.dataset}' is not an event dataset feeding profiles"))
            continue
        scope = [event.dataset] if event.dataset else list(event_types)
        known = [event_types[d] for d in scope]
        if not scope:
            problems.append(WorkspaceProblem(rel, f"{path}.{kind}", "the workspace has no event dataset"))
            continue
        if all(k is not None for k in known) and not any(event.event_type in (k or set()) for k in known):
            declared = sorted(set().union(*[k for k in known if k]))
            problems.append(WorkspaceProblem(rel, f"{path}.{kind}.type",
                                             f"unknown event type '{event.event_type}'"
                                             f" (declared: {', '.join(declared)})"))
        if isinstance(event, EventCondition | SequenceStep):
            problems.extend(_check_event_fields(ws, event, scope, rel, f"{path}.{kind}"))
    return problems


def _check_operator(op: str, value: Any, spec: FieldSpec, kind: str, name: str, rel: str,
                    path: str) -> list[WorkspaceProblem]:
    """Whether operator ``op`` with ``value`` fits field ``name`` of ``spec``'s type (``kind``: attribute...)."""
    if op in STRING_OPS and spec.type != "string":
        return [WorkspaceProblem(rel, f"{path}.op", f"'{op}' needs a string {kind}; '{name}' is {spec.type}")]
    if op in ORDER_OPS and spec.type not in ORDERED_TYPES:
        return [WorkspaceProblem(rel, f"{path}.op", f"'{op}' cannot compare {spec.type} {kind} '{name}'")]
    if spec.type in NUMERIC_TYPES and op not in ("exists", "missing"):
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, bool) or not isinstance(v, int | float) for v in values):
            return [WorkspaceProblem(rel, f"{path}.value",
                                     f"{kind} '{name}' is {spec.type}; the value must be a number")]
    return []


def _check_attribute_condition(ws: Workspace, condition: AttributeCondition, rel: str,
                               path: str) -> list[WorkspaceProblem]:
    """The attribute exists (dotted paths through objects), match/key fit arrays/maps, the operator fits."""
    attributes = ws.profile_attributes()
    head, *rest = condition.attribute.split(".")
    spec = attributes.get(head)
    if spec is None:
        return [WorkspaceProblem(rel, f"{path}.attribute", f"unknown attribute '{condition.attribute}'"
                                 f" (profile attributes: {', '.join(sorted(attributes))})")]
    for part in rest:
        inner = next((f for f in spec.fields or [] if f.name == part), None) if spec.type == "object" else None
        if inner is None:
            fields = ", ".join(f.name for f in spec.fields or [])
            return [WorkspaceProblem(rel, f"{path}.attribute", f"unknown attribute '{condition.attribute}': "
                                     f"'{spec.name}' is {spec.type}" + (f" with fields {fields}" if fields else ""))]
        spec = inner
    if condition.key is not None and spec.type != "map":
        return [WorkspaceProblem(rel, f"{path}.key", f"'key' applies to a map attribute; "
                                                     f"'{condition.attribute}' is {spec.type}")]
    if spec.type == "map":
        if condition.key is None:
            if condition.op in ("exists", "missing"):
                return []
            return [WorkspaceProblem(rel, f"{path}.key", f"attribute '{condition.attribute}' is a map: "
                                                         f"'{condition.op}' needs 'key'")]
        assert spec.values is not None
        spec = spec.values
    if condition.match is not None and spec.type != "array":
        return [WorkspaceProblem(rel, f"{path}.match", f"'match' applies to an array attribute; "
                                                       f"'{condition.attribute}' is {spec.type}")]
    if spec.type == "array":
        assert spec.items is not None
        if condition.op in ("exists", "missing") and condition.match is None:
            return []
        spec = spec.items
    if spec.type in ("object", "array", "map") and condition.op not in ("exists", "missing"):
        return [WorkspaceProblem(rel, f"{path}.op", f"'{condition.op}' cannot compare {spec.type} "
                                                    f"attribute '{condition.attribute}'")]
    return _check_operator(condition.op, condition.value, spec, "attribute", condition.attribute, rel, path)


def _check_event_fields(ws: Workspace, event: EventCondition | SequenceStep, scope: list[str], rel: str,
                        path: str) -> list[WorkspaceProblem]:
    """Filters (``where``) and aggregates name fields of the event schemas in scope, with fitting operators."""
    fields: dict[str, FieldSpec] = {}
    for name in scope:
        for f in ws.schema_of(name).fields:
            fields.setdefault(f.name, f)
    problems: list[WorkspaceProblem] = []
    checks: list[tuple[str, str, str, Any]] = [(f"{path}.where.{i}", w.field, w.op, w.value)
                                               for i, w in enumerate(event.where)]
    aggregate = event.aggregate if isinstance(event, EventCondition) else None
    if aggregate is not None:
        checks.append((f"{path}.aggregate", aggregate.field, aggregate.op, aggregate.value))
    for where, name, op, value in checks:
        spec = fields.get(name)
        if spec is None:
            problems.append(WorkspaceProblem(rel, f"{where}.field", f"unknown event field '{name}'"
                                             f" (fields: {', '.join(sorted(fields))})"))
            continue
        if spec.type in ("object", "array", "map"):
            problems.append(WorkspaceProblem(rel, f"{where}.field", f"event field '{name}' is {spec.type}; "
                                                                   "only scalar fields can be compared"))
            continue
        if where.endswith("aggregate") and aggregate is not None:
            fn = aggregate.fn
            if fn in ("sum", "avg") and spec.type not in NUMERIC_TYPES:
                problems.append(WorkspaceProblem(rel, f"{where}.fn", f"'{fn}' needs a numeric event field; "
                                                                     f"'{name}' is {spec.type}"))
                continue
            if fn == "count_distinct":
                problems.extend(_check_operator(op, value, FieldSpec(name=name, type="long"),
                                                "count of distinct event field", name, rel, where))
                continue
        problems.extend(_check_operator(op, value, spec, "event field", name, rel, where))
    return problems


def audience_cycles(ws: Workspace) -> list[WorkspaceProblem]:
    """Audiences that depend on themselves through ``audience:`` references, one problem per cycle."""
    graph = {a.id: [n.audience for n in _rule_nodes(a.rule) if n.audience is not None]
             for a in ws.audiences.values()}
    problems: list[WorkspaceProblem] = []
    seen: set[frozenset[str]] = set()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in graph.get(node, []):
            if dep not in graph:
                continue  # unknown audience: reported by _check_rule
            if state.get(dep) == 1:
                cycle = [*stack[stack.index(dep):], dep]
                if frozenset(cycle) not in seen:
                    seen.add(frozenset(cycle))
                    problems.append(WorkspaceProblem(ws.files[f"audiences/{dep}"], "rule",
                                                     f"audiences form a cycle: {' -> '.join(cycle)}"))
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[node] = 2

    for audience_id in sorted(graph):
        if audience_id not in state:
            visit(audience_id, [audience_id])
    return problems


def _rule_nodes(rule: Rule) -> Iterator[Rule]:
    yield rule
    for child in (rule.all or []) + (rule.any or []) + ([rule.not_] if rule.not_ is not None else []):
        yield from _rule_nodes(child)
