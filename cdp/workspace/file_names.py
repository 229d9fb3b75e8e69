"""Export file names: the template's macros, how they render, and what makes a template unsafe.

A template is text with macros: ``{destination}``, ``{audience_id}``, ``{audience_name}`` (a slug of
the audience's name), ``{date}`` (YYYYMMDD), ``{datetime}`` (YYYYMMDDTHHMMSS) and ``{timestamp}`` (epoch
seconds: 10 digits from 2001 to 2286). The exporter appends the extension (``.csv``, ``.jsonl``,
``.parquet``, then ``.gz``) and, for a file split every ``split_rows`` rows, ``_2``, ``_3``, ...
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata

from cdp.workspace.models import FILE_NAME_MACROS, FileDestination

MAX_FILE_NAME_BYTES = 255  # the limit of common file systems and of SFTP servers' names
# "_" and up to six digits: the suffix of the 2nd to 999,999th part of a split file
SPLIT_SUFFIX_RESERVE = 7
# Length of each date-time macro's expansion; every date position may hold any digit.
DATE_TIME_LENGTHS = {"date": 8, "datetime": 15, "timestamp": 10}
# Stands for "any digit" in a name's shape; control characters never appear in a valid template.
ANY_DIGIT = "\x00"
_MACRO = re.compile(r"\{([^{}]*)\}")


def slugify(text: str) -> str:
    """Lower-case ASCII words joined by '-' ("Gold & platinum members" -> "gold-platinum-members")."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


def required_macros(dest: FileDestination) -> tuple[str, ...]:
    """The macros a template must hold: a per-audience file needs the audience id, every file the destination."""
    return ("destination", "audience_id") if dest.layout == "per_audience" else ("destination",)


def template_problem(dest: FileDestination) -> str | None:
    """Why ``dest.file_name`` cannot name files safely, or None."""
    template = dest.file_name
    known = ", ".join(f"{{{m}}}" for m in FILE_NAME_MACROS)
    if "{" in _MACRO.sub("", template) or "}" in _MACRO.sub("", template):
        return f"has a '{{' or '}}' that is not part of a macro (macros: {known})"
    used = _MACRO.findall(template)
    unknown = [m for m in used if m not in FILE_NAME_MACROS]
    if unknown:
        return f"unknown macro {{{unknown[0]}}} (macros: {known})"
    missing = [m for m in required_macros(dest) if m not in used]
    if missing:
        return (f"must contain {{{missing[0]}}}: with layout {dest.layout}, "
                f"{' and '.join(f'{{{m}}}' for m in required_macros(dest))} make each file's name its own")
    literal = _MACRO.sub("", template)
    if "/" in literal or "\\" in literal:
        return "contains a '/' or '\\': a file name cannot hold a folder; put folders in path"
    if ".." in template:
        return "contains '..'; use another separator"
    control = next((c for c in template if unicodedata.category(c) == "Cc"), None)
    if control is not None:
        return f"contains the control character U+{ord(control):04X}; remove it"
    if template.startswith("."):
        return "starts with '.': the file would be hidden (and the exporter's temporary files start with '.')"
    return None


def _render(dest: FileDestination, audience_id: str, audience_name: str, stamps: dict[str, str]) -> str:
    values = {"destination": dest.name, "audience_id": audience_id, "audience_name": slugify(audience_name),
              **stamps}
    return _MACRO.sub(lambda m: values[m.group(1)], dest.file_name) + dest.extension


def render_file_name(dest: FileDestination, audience_id: str, audience_name: str, when: dt.datetime) -> str:
    """The file name (with its extension) of one audience's file, for a run stamped ``when`` (UTC)."""
    utc = when.astimezone(dt.UTC) if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)
    stamps = {"date": utc.strftime("%Y%m%d"), "datetime": utc.strftime("%Y%m%dT%H%M%S"),
              "timestamp": str(int(utc.timestamp()))}
    return _render(dest, audience_id, audience_name, stamps)


def name_shape(dest: FileDestination, audience_id: str, audience_name: str) -> str:
    """The name with ANY_DIGIT at every position a date-time macro fills (the template is valid)."""
    stamps = {m: ANY_DIGIT * n for m, n in DATE_TIME_LENGTHS.items()}
    stamps["datetime"] = ANY_DIGIT * 8 + "T" + ANY_DIGIT * 6
    return _render(dest, audience_id, audience_name, stamps)


def worst_case_bytes(dest: FileDestination, audiences: list[tuple[str, str]]) -> tuple[int, str] | None:
    """The longest name in bytes any of ``audiences`` (id, name) can get, split suffix included, and whose."""
    sizes = [(len(name_shape(dest, a, n).encode("utf-8")) + SPLIT_SUFFIX_RESERVE, a) for a, n in audiences]
    return max(sizes, key=lambda s: s[0]) if sizes else None
