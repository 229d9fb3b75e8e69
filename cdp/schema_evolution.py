"""Schema evolution: which changes of a declared schema the lake's existing table can take.

Additive changes are allowed: a new optional field becomes a new column on the next run (earlier
rows read it as null), and so does a new optional field inside an object. Everything else would
make stored rows unreadable or wrong and is refused: a field removed, a field whose type changed,
a new *required* field (stored rows have no value for it).

The stored schema is read from the Delta log with plain file reads (and pyarrow for a checkpoint),
so that ``cdp validate`` can check a workspace against the lake without starting Spark.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.parquet as pq
from pyspark.sql import types as T

from cdp.errors import CdpError
from cdp.schemas import METADATA_FIELDS, spark_type
from cdp.workspace.models import SchemaSpec

log = logging.getLogger(__name__)


class SchemaEvolutionError(CdpError):
    """A declared schema changes its dataset's stored table in a way the table cannot take."""


def declared_table_struct(schema: SchemaSpec) -> T.StructType:
    """The dataset table a schema declares, with requiredness: a required field is not nullable.

    (Tables store every column as nullable; this struct is only for comparing with the stored one.)
    """
    return T.StructType([T.StructField(f.name, spark_type(f), not f.required) for f in schema.fields]
                        + METADATA_FIELDS)


def _type_name(data_type: T.DataType) -> str:
    return data_type.simpleString()


def breaking_changes(declared: T.StructType, stored: T.StructType, prefix: str = "") -> list[tuple[str, str]]:
    """``(field path, what breaks)`` for every change of ``declared`` the ``stored`` table cannot take.

    Nullability of stored columns is ignored (Delta stores every column as nullable); a declared
    non-nullable field that the table does not have yet is a new required field.
    """
    problems: list[tuple[str, str]] = []
    declared_by_name = {f.name: f for f in declared.fields}
    stored_by_name = {f.name: f for f in stored.fields}
    for field in stored.fields:
        path = f"{prefix}{field.name}"
        new = declared_by_name.get(field.name)
        if new is None:
            problems.append((path, f"field '{path}' ({_type_name(field.dataType)}) is in the stored table but no "
                                   "longer declared: removing a field is a breaking change"))
        elif isinstance(new.dataType, T.StructType) and isinstance(field.dataType, T.StructType):
            problems.extend(breaking_changes(new.dataType, field.dataType, f"{path}."))
        elif _type_name(new.dataType) != _type_name(field.dataType):
            problems.append((path, f"field '{path}' is {_type_name(field.dataType)} in the stored table but declared "
                                   f"{_type_name(new.dataType)}: changing a type is a breaking change"))
    for field in declared.fields:
        path = f"{prefix}{field.name}"
        if field.name not in stored_by_name and not field.nullable:
            problems.append((path, f"new field '{path}' is required, but the rows already stored have no value for "
                                   "it: declare it optional (required: false)"))
    return problems


def compare_with_table(declared: T.StructType, stored: T.StructType) -> list[str]:
    """Every breaking change of ``declared`` against the ``stored`` table schema, as messages (empty: compatible)."""
    return [message for _, message in breaking_changes(declared, stored)]


def read_delta_schema(table_path: str) -> T.StructType | None:
    """The schema of a local Delta table from its log (newest metaData action), or None when there is no table.

    Reads ``_last_checkpoint`` and its checkpoint parquet when present, then the newer commit files.
    Tables on object stores are not read here (None, with a warning): Spark checks them on write.
    """
    parsed = urlparse(table_path)
    if parsed.scheme not in ("", "file"):
        log.warning("cannot read the Delta log of %s without Spark: schema evolution not checked", table_path)
        return None
    log_dir = Path(parsed.path if parsed.scheme == "file" else table_path) / "_delta_log"
    if not log_dir.is_dir():
        return None
    schema_string: str | None = None
    after = -1
    last_checkpoint = log_dir / "_last_checkpoint"
    if last_checkpoint.is_file():
        info = json.loads(last_checkpoint.read_text(encoding="utf-8"))
        after = int(info["version"])
        schema_string = _checkpoint_schema(log_dir, after, info.get("parts"))
    commits = sorted((int(p.name.split(".")[0]), p) for p in log_dir.glob("*.json") if p.name.split(".")[0].isdigit())
    for version, path in commits:
        if version <= after:
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                action = json.loads(line)
                if "metaData" in action:
                    schema_string = action["metaData"]["schemaString"]
    if schema_string is None:
        return None
    return T.StructType.fromJson(json.loads(schema_string))


def _checkpoint_schema(log_dir: Path, version: int, parts: int | None) -> str | None:
    """The schemaString of the metaData action in a (classic, single or multi-part) checkpoint."""
    if parts:
        files = [log_dir / f"{version:020d}.checkpoint.{i:010d}.{parts:010d}.parquet" for i in range(1, parts + 1)]
    else:
        files = [log_dir / f"{version:020d}.checkpoint.parquet"]
        if not files[0].is_file():  # a v2 checkpoint: <version>.checkpoint.<uuid>.parquet
            files = sorted(log_dir.glob(f"{version:020d}.checkpoint.*.parquet"))
    for file in files:
        table = pq.read_table(file, columns=["metaData"])
        for meta in table.column("metaData").to_pylist():
            if meta is not None and meta.get("schemaString"):
                return str(meta["schemaString"])
    return None


def check_against_table(schema: SchemaSpec, table_path: str, dataset: str, schema_file: str) -> None:
    """Raise SchemaEvolutionError when ``schema`` breaks the dataset table at ``table_path`` (if there is one)."""
    stored = read_delta_schema(table_path)
    if stored is None:
        return
    problems = breaking_changes(declared_table_struct(schema), stored)
    if problems:
        listed = "; ".join(f"fields.{field}: {message}" for field, message in problems)
        raise SchemaEvolutionError(
            f"dataset {dataset}: schema '{schema.name}' ({schema_file}) is not compatible with the stored table "
            f"{table_path}: {listed}. Only additive changes are applied automatically (new optional fields); "
            "revert the change or add a new field instead")
