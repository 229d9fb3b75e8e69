"""JSON lines to the parsed layout."""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdp.ingestion.formats.text import encoding_problem
from cdp.ingestion.layout import CORRUPT, LINE, MALFORMED, MALFORMED_CODE, PERMISSIVE, RAW, STRINGS, string_struct
from cdp.schemas import ROW_NUMBER, SOURCE_FILE
from cdp.workspace.models import SchemaSpec

log = logging.getLogger(__name__)


def transform_jsonl(lines: DataFrame, schema: SchemaSpec) -> DataFrame:
    """JSON lines (``_source_file``, ``_row_number``, ``_line``) to the parsed layout.

    Every field is read as a string: a number arrives as its text, a nested object or array as
    its JSON text, so the typed cast in transform_check can say exactly what is wrong.
    """
    string_schema = T.StructType([*string_struct(schema).fields, T.StructField(CORRUPT, T.StringType(), True)])
    parsed = F.from_json(F.col(LINE), string_schema, PERMISSIVE)
    malformed = (F.when(parsed.isNull() | parsed[CORRUPT].isNotNull(),
                        F.when(F.try_parse_json(F.col(LINE)).isNull(), F.lit("line is not valid JSON"))
                        .otherwise(F.lit("line is valid JSON but not an object"))))
    encoding, code = encoding_problem()
    return lines.select(
        SOURCE_FILE, ROW_NUMBER, F.col(LINE).alias(RAW), F.coalesce(encoding, malformed).alias(MALFORMED),
        code.alias(MALFORMED_CODE), F.struct(*[parsed[f.name].alias(f.name) for f in schema.fields]).alias(STRINGS),
    )


