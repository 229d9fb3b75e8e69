"""File destinations: audiences exist, the mapping's sources resolve and identify a person, headers
are unique, hashing applies, the deduplication key exists, and file names are safe and unique.

File names are rendered from ``file_name`` by :func:`cdp.workspace.file_names.render_file_name`; the
checks here use the longest expansion a run can produce, so that the 255-byte limit is met by every
file the exporter will write, and compare the names of every two destinations that write into the
same place.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from cdp.errors import WorkspaceProblem
from cdp.workspace.checks.base import (
    CheckContext,
    attributes_known,
    first_reference_note,
    identity_attribute_names,
    resolve_attribute,
    unknown_attribute_references,
)
from cdp.workspace.checks.paths import placeholder_problem, render
from cdp.workspace.file_names import (
    ANY_DIGIT,
    MAX_FILE_NAME_BYTES,
    SPLIT_SUFFIX_RESERVE,
    name_shape,
    template_problem,
    worst_case_bytes,
)
from cdp.workspace.models import (
    DESTINATION_PATH_PLACEHOLDERS,
    PROFILE_ID_SOURCE,
    FileDestination,
    LocalDestination,
    SftpDestination,
    StreamingDestination,
)
from cdp.workspace.workspace import Workspace

# The columns the exporter adds after the mapped ones (per_audience layout, include_membership_status).
MEMBERSHIP_HEADERS = ("membership_status", "last_qualification_time")
HASHABLE_NAMESPACE_TYPES = ("email", "phone")
HASHABLE_FORMATS = ("email", "phone")


def _mapping(ws: Workspace, dest: FileDestination | StreamingDestination, rel: str) -> list[WorkspaceProblem]:
    problems: list[WorkspaceProblem] = []
    attributes = ws.profile_attributes()
    identity_attributes = identity_attribute_names(ws)
    unknown = unknown_attribute_references(ws)
    resolved_all, identifies = True, False
    headers: dict[str, int] = {}
    for i, mapped in enumerate(dest.mapping):
        key = f"mapping.{i}"
        if mapped.namespace is not None:
            ns = ws.namespaces.get(mapped.namespace)
            if ns is None:
                resolved_all = False  # reported once by the namespaces check
                continue
            mapped.bind_namespace_type(ns.type)
            identifies = True
            if mapped.hash is not None and ns.type not in HASHABLE_NAMESPACE_TYPES:
                problems.append(WorkspaceProblem(rel, f"{key}.hash", f"'hash' applies to e-mail and phone "
                                                 f"identities; namespace '{ns.code}' is {ns.type}"))
        elif mapped.source == PROFILE_ID_SOURCE:
            identifies = True
            if mapped.hash is not None:
                problems.append(WorkspaceProblem(rel, f"{key}.hash", "'hash' applies to e-mail and phone "
                                                 "identities, not to profile_id"))
        else:
            spec, _ = resolve_attribute(attributes, mapped.source)
            if spec is None:
                resolved_all = False
                note = "" if mapped.source.split(".")[0] in attributes else \
                    first_reference_note(unknown, mapped.source, rel, f"{key}.source")
                if note is not None:
                    problems.append(WorkspaceProblem(rel, f"{key}.source", f"attribute '{mapped.source}' is not a "
                                                     f"profile attribute{note}"))
                continue
            identifies = identifies or mapped.source in identity_attributes
            if mapped.hash is not None and (spec.type != "string" or spec.format not in HASHABLE_FORMATS):
                what = f"string of format {spec.format}" if spec.type == "string" and spec.format else \
                    ("string without a format" if spec.type == "string" else spec.type)
                problems.append(WorkspaceProblem(rel, f"{key}.hash", f"'hash' applies to e-mail and phone values; "
                                                 f"'{mapped.source}' is a {what}"))
        header = mapped.header
        if header in headers:
            problems.append(WorkspaceProblem(rel, f"{key}.name", f"column '{header}' appears twice "
                                             f"(mapping.{headers[header]} has the same header); rename one"))
        elif (isinstance(dest, FileDestination) and dest.include_membership_status and dest.layout == "per_audience"
              and header in MEMBERSHIP_HEADERS):
            problems.append(WorkspaceProblem(rel, f"{key}.name", f"column '{header}' is also a membership column "
                                             "the export adds; rename it"))
        headers.setdefault(header, i)
    if resolved_all and not identifies:
        problems.append(WorkspaceProblem(rel, "mapping", "maps no identity namespace, no identity attribute and not "
                                         "profile_id: its rows would identify no one; add e.g. "
                                         "{source: \"identity:<namespace>\"} or {source: profile_id}"))
    dedup = dest.deduplication
    if dedup is not None and dedup.attributes is not None:
        for i, name in enumerate(dedup.attributes):
            if resolve_attribute(attributes, name)[0] is None:
                note = "" if name.split(".")[0] in attributes else \
                    first_reference_note(unknown, name, rel, f"deduplication.attributes.{i}")
                if note is not None:
                    problems.append(WorkspaceProblem(rel, f"deduplication.attributes.{i}",
                                                     f"attribute '{name}' is not a profile attribute{note}"))
    return problems


def location(dest: FileDestination, ctx: CheckContext) -> tuple[str, ...]:
    """Where a destination's files go, normalised so that two destinations writing into the same place
    compare equal (local: the resolved folder; object stores: bucket or container and prefix; SFTP: the
    connection and folder). Only called once the path's placeholders are known to be valid."""
    folder = render(dest.path, dest.name)
    if isinstance(dest, LocalDestination):
        return ("local", str(Path(ctx.settings.exports, folder).resolve()))
    prefix = "/".join(part for part in folder.split("/") if part not in ("", "."))
    if isinstance(dest, SftpDestination):
        return ("sftp", dest.connection or "", os.path.normpath("/" + prefix) if folder.startswith("/") else prefix)
    container = getattr(dest, "bucket", None) or getattr(dest, "container", "")
    return (dest.type_name, str(container), prefix)


def _collisions(ws: Workspace, ctx: CheckContext, valid: list[FileDestination]) -> list[WorkspaceProblem]:
    """Two destinations (or two audiences of one) whose names can be equal in the same location.

    Every macro expands to a fixed length (dates and times are digits, ids and slugs are known), so a
    name is a string whose date positions may hold any digit: two names can collide when they have the
    same length and agree at every position (a date digit matches any digit).
    """
    by_place: dict[tuple[str, ...], list[tuple[FileDestination, str, str]]] = defaultdict(list)
    for dest in valid:
        place = location(dest, ctx)
        # A combined file holds every audience: one name per run, whatever the audiences.
        for audience_id in dest.audiences if dest.layout == "per_audience" else dest.audiences[:1]:
            audience = ws.audiences.get(audience_id)
            if audience is not None:
                by_place[place].append((dest, audience.id, name_shape(dest, audience.id, audience.name)))
    problems: list[WorkspaceProblem] = []
    reported: set[tuple[str, str]] = set()
    for items in by_place.values():
        buckets: dict[str, list[tuple[FileDestination, str, str]]] = defaultdict(list)
        for item in items:
            # Digits and date positions fold together: only names in the same bucket can collide.
            buckets["".join("#" if c == ANY_DIGIT or c.isdigit() else c for c in item[2])].append(item)
        for bucket in buckets.values():
            for i, (dest_a, aud_a, shape_a) in enumerate(bucket):
                for dest_b, aud_b, shape_b in bucket[i + 1:]:
                    if (dest_a.name, aud_a) == (dest_b.name, aud_b) or not _can_match(shape_a, shape_b):
                        continue
                    if dest_a.name > dest_b.name:
                        dest_a, aud_a, dest_b, aud_b = dest_b, aud_b, dest_a, aud_a
                    first, second = dest_a.name, dest_b.name
                    if (first, second) in reported:
                        continue
                    reported.add((first, second))
                    example = "".join(b if a == ANY_DIGIT else a for a, b in zip(shape_a, shape_b, strict=True))
                    example = example.replace(ANY_DIGIT, "0")
                    if first == second:
                        message = (f"audiences '{aud_a}' and '{aud_b}' can get the same file name (e.g. "
                                   f"'{example}'); follow {{audience_id}} with a character ids cannot hold, "
                                   "such as '-'")
                    else:
                        message = (f"destinations '{first}' and '{second}' write into the same place and can write "
                                   f"the same file (e.g. '{example}' for audiences '{aud_a}' and '{aud_b}'); "
                                   "give one another path or file_name")
                    problems.append(WorkspaceProblem(ws.files[f"destinations/{second}"], "file_name", message))
    return problems


def _can_match(a: str, b: str) -> bool:
    """Whether two shapes of the same bucket (same length) agree at every position."""
    return all(x == y or (x == ANY_DIGIT and y.isdigit()) or (y == ANY_DIGIT and x.isdigit())
               for x, y in zip(a, b, strict=True))


def check(ws: Workspace, ctx: CheckContext) -> list[WorkspaceProblem]:
    """Audiences, mapping, file names of every destination; then names that collide between them."""
    problems: list[WorkspaceProblem] = []
    known = attributes_known(ws)
    named: list[FileDestination] = []
    for dest in ws.destinations.values():
        rel = ws.files[f"destinations/{dest.name}"]
        for i, audience_id in enumerate(dest.audiences):
            if audience_id not in ws.audiences and not ws.is_broken("audiences", audience_id):
                problems.append(WorkspaceProblem(rel, f"audiences.{i}", f"audience '{audience_id}' is not defined"))
        if known:
            problems.extend(_mapping(ws, dest, rel))
        if not isinstance(dest, FileDestination):
            continue  # streaming destinations send messages, not files: no file names to check
        wrong = template_problem(dest)
        if wrong is not None:
            problems.append(WorkspaceProblem(rel, "file_name", wrong))
            continue
        names = [(a, ws.audiences[a].name) for a in dest.audiences if a in ws.audiences]
        longest = worst_case_bytes(dest, names)
        if longest is not None and longest[0] > MAX_FILE_NAME_BYTES:
            size, audience_id = longest
            problems.append(WorkspaceProblem(rel, "file_name", f"names can be {size} bytes long (audience "
                                             f"'{audience_id}', the longest date-time, the extension {dest.extension} "
                                             f"and a split suffix of up to {SPLIT_SUFFIX_RESERVE} bytes), more than "
                                             f"{MAX_FILE_NAME_BYTES}: shorten file_name or the audience's id or name"))
            continue
        if placeholder_problem(dest.path, DESTINATION_PATH_PLACEHOLDERS) is None:
            named.append(dest)
    problems.extend(_collisions(ws, ctx, named))
    return problems
