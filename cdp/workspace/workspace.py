"""The loaded workspace: every model by name, and the views the jobs read (profile attributes, event types...)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cdp.workspace.models import (
    AudienceSpec,
    DatasetSpec,
    DestinationSpec,
    FieldSpec,
    Namespace,
    SchemaSpec,
    WorkspaceFile,
)


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
    # names whose file failed to parse ("namespaces/email", "schemas/crm", ...): references to them are
    # not reported again, so one mistake gives one problem
    broken: frozenset[str] = frozenset()
    # where an item of a file holding several lives in it: "namespaces/email" -> "namespaces.2"
    keys: dict[str, str] = field(default_factory=dict)

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

    def is_broken(self, kind: str, name: str) -> bool:
        """Whether the file that would define ``name`` of ``kind`` (schemas, namespaces...) failed to load."""
        return f"{kind}/{name}" in self.broken or f"{kind}/*" in self.broken
