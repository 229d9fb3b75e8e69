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


def unknown_attribute_references(ws: Workspace) -> dict[str, list[tuple[str, str]]]:
    """(file, key) of every reference to an attribute whose first name is no profile attribute, by that
    name, in the order problems are reported (audiences, then destinations). A misspelt or renamed
    field is one root cause: it is reported once, at the first reference, naming the others."""
    from cdp.workspace.models import PROFILE_ID_SOURCE

    attributes = ws.profile_attributes()
    found: dict[str, list[tuple[str, str]]] = {}

    def add(name: str, rel: str, key: str) -> None:
        head = name.split(".")[0]
        if head not in attributes:
            found.setdefault(head, []).append((rel, key))

    for audience in ws.audiences.values():
        rel = ws.files[f"audiences/{audience.id}"]
        for path, node in audience.rule.walk():
            if node.attribute is not None:
                add(node.attribute, rel, f"{path}.attribute")
    for dest in ws.destinations.values():
        rel = ws.files[f"destinations/{dest.name}"]
        for i, mapped in enumerate(dest.mapping):
            if mapped.namespace is None and mapped.source != PROFILE_ID_SOURCE:
                add(mapped.source, rel, f"mapping.{i}.source")
        if dest.deduplication is not None:
            for i, name in enumerate(dest.deduplication.attributes or []):
                add(name, rel, f"deduplication.attributes.{i}")
    return found


def first_reference_note(references: dict[str, list[tuple[str, str]]], name: str, rel: str,
                         key: str) -> str | None:
    """None when (rel, key) is not the first reference to unknown ``name`` (its problem is reported there),
    else the text naming the other references ("" when there are none)."""
    places = references.get(name.split(".")[0], [])
    if not places or places[0] != (rel, key):
        return None
    others = places[1:]
    return f"; also named by {', '.join(f'{r}: {k}' for r, k in others)}" if others else ""
