"""The "parsed" layout every landed format is brought to before the record checks run."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import types as T

from cdp.ingestion.reasons import FILE_UNREADABLE
from cdp.schemas import ROW_NUMBER, SOURCE_FILE
from cdp.workspace.models import SchemaSpec

# Columns of the "parsed" layout every format is brought to before the checks run. Declared
# values live inside structs so that a declared field can never collide with these names.
LINE = "_line"
RAW = "_raw"
MALFORMED = "_malformed"  # why the record could not be parsed at all (null when it could)
MALFORMED_CODE = "_malformed_code"  # its reason code when not malformed_record (bad_header, invalid_encoding)
INVALID_UTF8 = "_invalid_utf8"  # a text line (or CSV record) holding bytes that are not valid UTF-8
STRINGS = "_s"  # every declared field as the string that arrived
TYPED = "_t"  # every declared field cast to its declared type (null when absent or not castable)
REASONS = "_reasons"
DROPPED = "_dropped_identities"  # the reasons of the identity values dropped from a valid record
MONO = "_mono"
CORRUPT = "_corrupt_record"
UNCLOSED = "_unclosed"  # a CSV record whose quoted field is still open at the end of its file

PERMISSIVE = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT}


@dataclass(frozen=True)
class UnreadableFile:
    """A landed file whose records are not read (unreadable, or a duplicate); it becomes one quarantine row."""

    path: str
    message: str
    code: str = FILE_UNREADABLE


def parsed_struct(schema: SchemaSpec) -> T.StructType:
    """The layout every format is parsed to: where a record came from, its raw text and its values as strings."""
    return T.StructType([
        T.StructField(SOURCE_FILE, T.StringType(), False),
        T.StructField(ROW_NUMBER, T.LongType(), True),
        T.StructField(RAW, T.StringType(), True),
        T.StructField(MALFORMED, T.StringType(), True),
        T.StructField(MALFORMED_CODE, T.StringType(), True),
        T.StructField(STRINGS, string_struct(schema), True),
    ])


def string_struct(schema: SchemaSpec) -> T.StructType:
    """Every declared field as a nullable string: what a record's values are before they are typed."""
    return T.StructType([T.StructField(f.name, T.StringType(), True) for f in schema.fields])


