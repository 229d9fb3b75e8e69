"""A destination's cadence: when it is activated, if not with the daily run.

``schedule:`` in a destination file is one of :data:`CADENCES`; absent (or ``daily``) the destination is
exported by ``cdp_daily``. Any other value makes it a DAG of its own, ``cdp_activate__<destination>``
(``dags/cdp_activate.py``), run after every audience evaluation and, for ``every Nh``, every N hours too.

This module imports only PyYAML and the workspace's bounded YAML reader: the DAG file reads the cadences when
Airflow parses it, where the full workspace loader (and what it imports) does not belong.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cdp.workspace.yaml_safe import YamlProblem, load_yaml

log = logging.getLogger(__name__)

DAILY: Final = "daily"
AFTER_AUDIENCE_EVALUATION: Final = "after_audience_evaluation"
# every N hours: the hours the product offers (a divisor of 24, so that the ticks fall at the same hours daily)
EVERY_HOURS: Final = (3, 6, 8, 12)
CADENCES: Final = (*(f"every {h}h" for h in EVERY_HOURS), AFTER_AUDIENCE_EVALUATION, DAILY)
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
DAG_PREFIX: Final = "cdp_activate__"


class CadenceError(ValueError):
    """A ``schedule:`` value that is no cadence; ``str()`` is the message the workspace check reports."""


def parse_cadence(value: object) -> str:
    """``value`` as a cadence of :data:`CADENCES` (``every 6h``, ``after_audience_evaluation``, ``daily``).

    Spaces around and inside are forgiven (``every 6 h``); anything else raises :class:`CadenceError`.
    """
    text = re.sub(r"\s+", " ", value.strip()).replace(" h", "h") if isinstance(value, str) else None
    if text not in CADENCES:
        raise CadenceError(f"unknown schedule {value!r} (one of: {', '.join(CADENCES)}; leave it out to export "
                           "with the daily run cdp_daily)")
    return text


def every_hours(cadence: str) -> int | None:
    """N of ``every Nh``; None for ``after_audience_evaluation`` and ``daily``."""
    match = re.fullmatch(r"every (\d+)h", cadence)
    return int(match.group(1)) if match else None


def is_own_cadence(cadence: str | None) -> bool:
    """Whether a destination with this ``schedule`` runs as a DAG of its own (not with cdp_daily)."""
    return cadence is not None and cadence != DAILY


def dag_id(destination: str) -> str:
    """The DAG that activates a destination with a cadence of its own."""
    return f"{DAG_PREFIX}{destination}"


@dataclass(frozen=True)
class CadenceSpec:
    """One destination that runs on its own cadence, as the DAG file needs it."""

    destination: str
    cadence: str
    file: str  # destinations/<file>.yaml, for messages


def cadence_destinations(workspace: str | Path) -> list[CadenceSpec]:
    """The destinations of the workspace folder that run on their own cadence, by name.

    Reads only ``destinations/*.yaml`` and only their ``name`` and ``schedule`` keys. A file that cannot be read,
    or has no valid name, is skipped (logged): the workspace check of every run reports it with the others. A
    ``schedule`` that is no cadence raises :class:`CadenceError` naming the file and the key, so that the DAG
    file's import error in the Airflow UI says what to fix.
    """
    folder = Path(workspace) / "destinations"
    if not folder.is_dir():
        return []
    out: list[CadenceSpec] = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix not in (".yaml", ".yml") or not path.is_file():
            continue
        rel = f"destinations/{path.name}"
        try:
            data = load_yaml(path)
        except (YamlProblem, OSError) as exc:
            log.warning("%s: not read for its schedule (%s); the workspace check reports it", rel, exc)
            continue
        if not isinstance(data, dict) or data.get("schedule") is None:
            continue
        name = data.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            log.warning("%s: no valid name, so no DAG for its schedule; the workspace check reports it", rel)
            continue
        try:
            cadence = parse_cadence(data["schedule"])
        except CadenceError as exc:
            raise CadenceError(f"{rel}: schedule: {exc}") from None
        if is_own_cadence(cadence):
            out.append(CadenceSpec(name, cadence, rel))
    return sorted(out, key=lambda spec: spec.destination)
