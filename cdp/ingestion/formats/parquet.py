"""Parquet files to the parsed layout."""

from __future__ import annotations

import logging
import re

from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdp.ingestion.layout import MALFORMED, MALFORMED_CODE, RAW, STRINGS, UnreadableFile
from cdp.schemas import ROW_NUMBER, SOURCE_FILE
from cdp.workspace.models import SchemaSpec

log = logging.getLogger(__name__)


def _java_cause(exc: Exception) -> str:
    """The innermost cause of a Spark/Java error, which names what is wrong with the file."""
    text = str(exc)
    causes = re.findall(r"Caused by: ([^\n]+)", text)
    reason = causes[-1] if causes else text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return reason.strip()[:300]


def read_parquet_file(spark: SparkSession, path: str, location: str | None = None) -> DataFrame | UnreadableFile:
    """One Parquet file with ``_source_file`` and 1-based ``_row_number`` appended, or why it cannot be read.

    ``path`` is the listed path (the source file of the records), ``location`` where Spark reads it when
    that differs (``s3a://`` for an ``s3://`` object). Reading the footer (schema inference) is what fails for a
    truncated or non-Parquet file.
    """
    try:
        df = spark.read.parquet(location or path)
        data_columns = [F.col(f"`{c}`") for c in df.columns]
        return df.select(*data_columns, F.lit(path).alias(SOURCE_FILE),
                         (F.col("_metadata.row_index") + 1).alias(ROW_NUMBER))
    except (Py4JJavaError, PySparkException) as exc:
        cause = _java_cause(exc)
        log.warning("file %s is not readable as Parquet: %s", path, cause)
        return UnreadableFile(path, f"file cannot be read as Parquet: {cause}")




def transform_parquet(df: DataFrame, schema: SchemaSpec) -> DataFrame:
    """Parquet rows (file columns + ``_source_file``, ``_row_number``) to the parsed layout.

    Values are turned into strings (nested ones into JSON) and checked like text formats, so a
    file whose writer chose other types (int for long, string for a date) is judged the same way.
    The raw record is the row as JSON.
    """
    data = [c for c in df.columns if c not in (SOURCE_FILE, ROW_NUMBER)]
    types = {f.name: f.dataType for f in df.schema.fields}

    def as_string(name: str) -> Column:
        if name not in types:
            return F.lit(None).cast("string")
        col = F.col(f"`{name}`")
        if isinstance(types[name], T.StructType | T.ArrayType | T.MapType):
            return F.to_json(col)
        return col.cast("string")

    raw = F.to_json(F.struct(*[F.col(f"`{c}`") for c in data])) if data else F.lit("{}")
    return df.select(
        SOURCE_FILE, F.col(ROW_NUMBER).cast("long").alias(ROW_NUMBER), raw.alias(RAW),
        F.lit(None).cast("string").alias(MALFORMED), F.lit(None).cast("string").alias(MALFORMED_CODE),
        F.struct(*[as_string(f.name).alias(f.name) for f in schema.fields]).alias(STRINGS),
    )


