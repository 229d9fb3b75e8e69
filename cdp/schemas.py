"""Declared schemas to Spark types, in one place: table creation, validation and tests reuse these."""

from __future__ import annotations

from pyspark.sql import types as T

from cdp.workspace.models import FieldSpec, SchemaSpec

# Columns the platform adds to every dataset row (after the declared fields).
SOURCE_FILE = "_source_file"
ROW_NUMBER = "_row_number"
BATCH_DATE = "_batch_date"
RECORD_TS = "_record_ts"

METADATA_FIELDS = [
    T.StructField(SOURCE_FILE, T.StringType(), False),
    T.StructField(ROW_NUMBER, T.LongType(), True),
    T.StructField(BATCH_DATE, T.DateType(), False),
    T.StructField(RECORD_TS, T.TimestampType(), False),
]

_SCALARS: dict[str, T.DataType] = {
    "string": T.StringType(),
    "integer": T.IntegerType(),
    "long": T.LongType(),
    "double": T.DoubleType(),
    "boolean": T.BooleanType(),
    "date": T.DateType(),
    "timestamp": T.TimestampType(),
}


def spark_type(spec: FieldSpec) -> T.DataType:
    """The Spark type of one declared field."""
    if spec.type in _SCALARS:
        return _SCALARS[spec.type]
    if spec.type == "decimal":
        return T.DecimalType(spec.precision, spec.scale)
    if spec.type == "object":
        assert spec.fields is not None
        return T.StructType([T.StructField(f.name, spark_type(f), True) for f in spec.fields])
    if spec.type == "array":
        assert spec.items is not None
        return T.ArrayType(spark_type(spec.items), True)
    if spec.type == "map":
        assert spec.values is not None
        return T.MapType(T.StringType(), spark_type(spec.values), True)
    raise ValueError(f"unknown field type {spec.type!r}")


def declared_struct(schema: SchemaSpec) -> T.StructType:
    """The declared fields only, all nullable (requiredness is checked by validation, not by Spark)."""
    return T.StructType([T.StructField(f.name, spark_type(f), True) for f in schema.fields])


def dataset_struct(schema: SchemaSpec) -> T.StructType:
    """The schema of a dataset's staging and ingested Delta tables: declared fields + metadata."""
    return T.StructType(list(declared_struct(schema).fields) + METADATA_FIELDS)
