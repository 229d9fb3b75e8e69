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
import os
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
    A table on an object store (``s3a://``, ``s3://``) is read by delta-rs (:func:`read_object_store_schema`).
    """
    parsed = urlparse(table_path)
    if parsed.scheme not in ("", "file"):
        return read_object_store_schema(table_path)
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


def object_store_options(table_path: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """delta-rs storage options for a table on S3: the endpoint and region of the lake's store.

    The same environment as Spark's S3A settings (:func:`cdp.spark_conf.s3a_conf`): ``CDP_S3_ENDPOINT`` (else
    ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``) and ``AWS_REGION``. Credentials are not options: delta-rs
    reads ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (or the instance's role) from the environment itself.
    """
    env = dict(os.environ) if env is None else env
    if urlparse(table_path).scheme not in ("s3", "s3a"):
        return {}
    options = {"AWS_REGION": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"}
    endpoint = env.get("CDP_S3_ENDPOINT") or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        options["AWS_ENDPOINT_URL"] = endpoint
        options["AWS_ALLOW_HTTP"] = str(endpoint.startswith("http://")).lower()
        # S3-compatible stores (MinIO, moto) are addressed by path, as S3A is told (fs.s3a.path.style.access).
        options["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = "false"
    return options


def read_object_store_schema(table_path: str) -> T.StructType | None:
    """The schema of a Delta table on an object store, read from its log by delta-rs (no Spark, no JVM);
    None when there is no table there yet."""
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError, TableNotFoundError

    try:
        # delta-rs reads s3a:// URLs as S3 (Hadoop's scheme names the connector, the objects are the same).
        table = DeltaTable(table_path, storage_options=object_store_options(table_path))
    except TableNotFoundError:
        return None
    except DeltaError as exc:
        # Callers handle an unreadable log as they handle a local one that cannot be read.
        raise OSError(str(exc)) from exc
    # Delta's schema JSON: the format of a metaData action's schemaString, which Spark's StructType reads.
    return T.StructType.fromJson(json.loads(table.schema().to_json()))


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
