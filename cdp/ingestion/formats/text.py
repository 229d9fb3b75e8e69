"""Physical lines of landed text files, numbered per file."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import reduce

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from cdp.ingestion.layout import INVALID_UTF8, LINE, MONO
from cdp.ingestion.reasons import INVALID_ENCODING
from cdp.schemas import ROW_NUMBER, SOURCE_FILE


def read_text_lines(spark: SparkSession, files: Sequence[str], locations: Mapping[str, str] | None = None) -> DataFrame:
    """Every physical line of text files: ``_source_file`` (as listed), ``_mono`` (orders lines in a file), ``value``.

    Each file is read on its own (where ``locations`` says Spark reaches it, when that differs from the listed
    path: ``s3a://`` for an ``s3://`` object) so that its path is exactly the listed one. Spark's text reader
    splits on LF, CRLF and CR and keeps invalid UTF-8 bytes (cleaned in transform_number_lines).
    """
    locations = locations or {}
    frames = [
        spark.read.text(locations.get(path, path)).select(
            F.lit(path).alias(SOURCE_FILE),
            # partition index << 33 + position in the partition: numbers lines without a Python round trip
            F.monotonically_increasing_id().alias(MONO),
            F.col("value"),
        )
        for path in files
    ]
    return reduce(DataFrame.union, frames)


def transform_number_lines(df: DataFrame, keep_blank: bool = False) -> DataFrame:
    """Number the lines of each file from 1 and clean them; blank lines are dropped (but keep their number).

    Input: ``_source_file``, ``_mono`` (monotonically_increasing_id taken right after the read),
    ``value``. Output: ``_source_file``, ``_row_number``, ``_line``, ``_invalid_utf8`` (the line held
    bytes that are not UTF-8: they read as U+FFFD in ``_line``, and the record is quarantined as
    ``invalid_encoding``, never ingested with a changed value). Within one file Spark reads
    splits in byte order, so (partition, position) orders the lines; the row number is the
    number of lines in the file's earlier partitions plus the position in this one.
    """
    part = F.shiftright(F.col(MONO), 33)
    counts = df.groupBy(SOURCE_FILE, part.alias("_part")).agg(F.count(F.lit(1)).alias("_n"))
    earlier = Window.partitionBy(SOURCE_FILE).orderBy("_part").rowsBetween(Window.unboundedPreceding, -1)
    offsets = counts.select(SOURCE_FILE, "_part", F.coalesce(F.sum("_n").over(earlier), F.lit(0)).alias("_offset"))
    numbered = df.withColumn("_part", part).join(F.broadcast(offsets), [SOURCE_FILE, "_part"])
    row_number = (F.col("_offset") + F.col(MONO) - F.shiftleft(F.col("_part"), 33) + 1).cast("long")
    # Invalid UTF-8 bytes become U+FFFD instead of reaching Delta as broken strings; the flag keeps the record
    # out of the dataset (its value would differ from what was sent).
    line = F.make_valid_utf8(F.col("value"))
    line = F.regexp_replace(line, "\r$", "")
    out = numbered.select(SOURCE_FILE, row_number.alias(ROW_NUMBER), line.alias(LINE),
                          (~F.is_valid_utf8(F.col("value"))).alias(INVALID_UTF8))
    # A byte order mark only ever starts a file.
    out = out.withColumn(LINE, F.when(F.col(ROW_NUMBER) == 1, F.regexp_replace(LINE, "^\ufeff", ""))
                         .otherwise(F.col(LINE)))
    return out if keep_blank else out.where(~F.col(LINE).rlike(r"^\s*$"))




def encoding_problem(columns: Sequence[str]) -> tuple[Column, Column]:
    """(message, code) of a line or record flagged ``_invalid_utf8``; nulls for the others (and for frames of
    ``columns`` without the flag, such as lines built in memory)."""
    if INVALID_UTF8 not in columns:
        return F.lit(None).cast("string"), F.lit(None).cast("string")
    flagged = F.coalesce(F.col(INVALID_UTF8), F.lit(False))
    message = F.when(flagged, F.format_string(
        "record holds bytes that are not valid UTF-8 (the first shows as U+FFFD at character %d of raw); "
        "values are never ingested changed: re-export the file as UTF-8 and re-run the day",
        F.locate("\ufffd", F.col(LINE))))
    return message, F.when(flagged, F.lit(INVALID_ENCODING))
