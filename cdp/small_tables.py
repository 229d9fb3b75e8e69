"""The lake's bookkeeping tables (step marks, run metrics, quality results), written and read with delta-rs.

Every task records a few rows: its step mark before its first write and after its last, its counts, a quality
gate's outcomes. As a Spark write, each of those one-row commits costs about a second on a warm server (a job
to find the rows it replaces, one to write, the commit), three or four per task; delta-rs (``deltalake``) makes
the same Delta commit from the job's own process in about 10 ms, and reads the table back in tens of ms.

These tables are written only through this module (the maintenance job too: retention, compaction and vacuum
go through :func:`delete_rows`, :func:`compact` and :func:`vacuum`), so their commits come from one engine,
whose commit is an atomic put-if-absent: a hard link on a local file system, a conditional ``PUT``
(``If-None-Match``) on S3. Spark still reads them like any other table.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
from pyspark.sql import types as T
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from cdp.errors import LakeFilesError
from cdp.lake import TableSpec
from cdp.schema_evolution import object_store_options

log = logging.getLogger(__name__)

SCALARS: dict[type[T.DataType], pa.DataType] = {
    T.StringType: pa.string(),
    T.LongType: pa.int64(),
    T.IntegerType: pa.int32(),
    T.ShortType: pa.int16(),
    T.ByteType: pa.int8(),
    T.DoubleType: pa.float64(),
    T.FloatType: pa.float32(),
    T.BooleanType: pa.bool_(),
    T.DateType: pa.date32(),
    T.BinaryType: pa.binary(),
    # Delta's `timestamp` is UTC instants in microseconds; delta-rs reads and writes it as this Arrow type.
    T.TimestampType: pa.timestamp("us", tz="UTC"),
}


def arrow_type(data_type: T.DataType) -> pa.DataType:
    """The Arrow type delta-rs writes for a Spark type of a declared table schema."""
    if isinstance(data_type, T.StructType):
        return pa.struct([arrow_field(f) for f in data_type.fields])
    if isinstance(data_type, T.ArrayType):
        return pa.list_(pa.field("element", arrow_type(data_type.elementType), data_type.containsNull))
    if isinstance(data_type, T.MapType):
        return pa.map_(arrow_type(data_type.keyType),
                       pa.field("value", arrow_type(data_type.valueType), data_type.valueContainsNull))
    if isinstance(data_type, T.DecimalType):
        return pa.decimal128(data_type.precision, data_type.scale)
    for spark_type, arrow in SCALARS.items():
        if isinstance(data_type, spark_type):
            return arrow
    raise TypeError(f"no Arrow type for the Spark type {data_type.simpleString()}")


def arrow_field(field: T.StructField) -> pa.Field:
    return pa.field(field.name, arrow_type(field.dataType), field.nullable)


def arrow_schema(schema: T.StructType) -> pa.Schema:
    """The Arrow schema of a table declared in :mod:`cdp.lake`, nullability included."""
    return pa.schema([arrow_field(f) for f in schema.fields])


def table_uri(path: str) -> str:
    """The URL delta-rs opens for a lake path: a local folder as it is, ``s3a://`` (Hadoop's name) as ``s3://``."""
    parsed = urlparse(path)
    if parsed.scheme == "s3a":
        return "s3://" + path[len("s3a://"):]
    if parsed.scheme == "file":
        return parsed.path
    return path


def storage_options(path: str) -> dict[str, str] | None:
    """delta-rs storage options: on S3 the lake's endpoint and region, and commits by conditional ``PUT`` (every
    task writes from a process of its own, so a commit must be put-if-absent, as S3 and S3-compatible stores
    offer with ``If-None-Match``)."""
    options = object_store_options(path)
    if not options:
        return None
    return {**options, "conditional_put": "etag"}


def sql_value(value: object) -> str:
    """A value as a literal of a delta-rs (DataFusion) predicate."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (dt.date, str)):
        text = value.isoformat() if isinstance(value, dt.date) else value
        return "'" + text.replace("'", "''") + "'"
    raise TypeError(f"no predicate literal for {value!r}")


def predicate(where: Mapping[str, object]) -> str:
    """``col = value AND ...`` for the slice ``where`` names (column -> value)."""
    return " AND ".join(f'"{column}" = {sql_value(value)}' for column, value in where.items())


def _commit_conflict() -> tuple[type[BaseException], ...]:
    from deltalake.exceptions import CommitFailedError

    return (CommitFailedError,)


def _exists(uri: str, options: dict[str, str] | None) -> bool:
    from deltalake import DeltaTable

    return bool(DeltaTable.is_deltatable(uri, storage_options=options))


def _open(path: str) -> Any:  # deltalake.DeltaTable, or None when there is no table at ``path``
    from deltalake import DeltaTable

    uri, options = table_uri(path), storage_options(path)
    if not _exists(uri, options):
        return None
    return DeltaTable(uri, storage_options=options)


def replace_rows(path: str, spec: TableSpec, rows: Sequence[Sequence[Any]], where: Mapping[str, object],
                 add_new_columns: bool = False) -> None:
    """Replace the rows of the slice ``where`` (column -> value) of the table at ``path`` with ``rows`` (tuples in
    the order of ``spec.schema``), in one commit; the table is created (partitioned as declared) if absent.

    ``add_new_columns``: a table written before a column was added to its declared schema gains it (additive
    evolution; its older rows read null there)."""
    from deltalake import write_deltalake

    assert spec.schema is not None, f"{spec.name} has no declared schema"
    schema = arrow_schema(spec.schema)
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    table = pa.Table.from_arrays([pa.array(list(values), type=f.type)
                                  for values, f in zip(columns, schema, strict=True)], schema=schema)
    uri, options = table_uri(path), storage_options(path)
    # Evolve only a table that lacks a declared column: delta-rs's schema merge rewrites the table's schema (and
    # moves its partition columns last), which a table already in shape does not need.
    existing = _open(path) if add_new_columns else None
    evolve = existing is not None and not set(schema.names) <= set(existing.schema().to_arrow().names)

    def write() -> None:
        write_deltalake(uri, table, mode="overwrite", predicate=predicate(where),
                        partition_by=spec.partition_by or None, storage_options=options,
                        schema_mode="merge" if evolve else None)

    try:
        _retry_conflicts(write)
    except OSError as exc:
        raise LakeFilesError(f"cannot write the table {spec.name} at {path}: {exc}") from exc
    log.info("replaced %s where %s", path, predicate(where))


def read_rows(path: str, where: Mapping[str, object] | None = None) -> list[dict[str, Any]]:
    """The rows of the table at ``path`` (of the slice ``where`` names), as dicts; none when there is no table."""
    table = _open(path)
    if table is None:
        return []
    filters = [(column, "=", value) for column, value in (where or {}).items()]
    rows: list[dict[str, Any]] = table.to_pyarrow_table(filters=filters or None).to_pylist()
    return rows


def update_rows(path: str, where: Mapping[str, object], values: Mapping[str, object]) -> int:
    """Set ``values`` (column -> value) on the rows of the slice ``where``; how many rows were updated."""
    table = _open(path)
    if table is None:
        return 0
    metrics = _retry_conflicts(lambda: table.update(new_values=dict(values), predicate=predicate(where)))
    return int(metrics.get("num_updated_rows") or 0)


def delete_rows(path: str, condition: str) -> int | None:
    """Delete the rows of the table at ``path`` matching ``condition`` (a delta-rs predicate); how many were
    deleted, None when there is no table."""
    table = _open(path)
    if table is None:
        return None
    metrics = _retry_conflicts(lambda: table.delete(condition))
    return int(metrics.get("num_deleted_rows") or 0)


def compact_and_vacuum(path: str, retain_hours: int) -> bool:
    """Compact the table's small files, then remove the files no version younger than ``retain_hours`` needs
    (maintenance; False when there is no table)."""
    table = _open(path)
    if table is None:
        return False
    _retry_conflicts(lambda: table.optimize.compact())
    table.vacuum(retention_hours=retain_hours, dry_run=False, enforce_retention_duration=False)
    return True


def _retry_conflicts(action: Any) -> Any:
    return retry(retry=retry_if_exception_type(_commit_conflict()), stop=stop_after_attempt(5),
                 wait=wait_random_exponential(multiplier=0.2, max=5), reraise=True)(action)()
