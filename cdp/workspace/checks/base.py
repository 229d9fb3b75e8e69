"""What every check module shares: the context a check runs in and the views of the workspace it reads."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cdp.settings import Settings
from cdp.workspace.models import FieldSpec
from cdp.workspace.workspace import Workspace


@dataclass(frozen=True)
class CheckContext:
    """Where the workspace will run: the landing and exports roots that paths are resolved against."""

    settings: Settings


def defined(names: Iterable[object]) -> str:
    """``a, b, c`` (sorted) or ``none``: the list of valid choices a message ends with."""
    return ", ".join(sorted(str(n) for n in names)) or "none"


def attributes_known(ws: Workspace) -> bool:
    """Whether the profile attributes are complete: with a schema or dataset file broken (or a dataset
    naming an unknown schema), attribute checks would report that file's fields as unknown everywhere.
    The broken file's own problem is reported; fix it, then the rest is checked. Without any dataset
    there are no attributes either (that problem is reported by the datasets check)."""
    return bool(ws.datasets) and not any(d.schema_ not in ws.schemas for d in ws.datasets.values()) and not any(
        name.startswith(("schemas/", "datasets/")) for name in ws.broken)


def resolve_attribute(attributes: dict[str, FieldSpec], path: str) -> tuple[FieldSpec | None, str]:
    """The field a dotted attribute path (``address.city``) names through object fields, or None and why."""
    head, *rest = path.split(".")
    spec = attributes.get(head)
    if spec is None:
        return None, f"unknown attribute '{path}' (profile attributes: {defined(attributes)})"
    for part in rest:
        inner = next((f for f in spec.fields or [] if f.name == part), None) if spec.type == "object" else None
        if inner is None:
            fields = ", ".join(f.name for f in spec.fields or [])
            return None, (f"unknown attribute '{path}': '{spec.name}' is {spec.type}"
                          + (f" with fields {fields}" if fields else ""))
        spec = inner
    return spec, ""


def identity_attribute_names(ws: Workspace) -> set[str]:
    """Profile attributes that hold an identity (a field with ``identity:`` in a profile dataset's schema)."""
    names: set[str] = set()
    for dataset in ws.profile_datasets:
        names.update(f.name for f in ws.schemas[dataset.schema_].identity_fields)
    return names
