"""Physical lines of landed text files, numbered per file."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from functools import reduce

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from cdp.ingestion.layout import LINE, MONO
from cdp.schemas import ROW_NUMBER, SOURCE_FILE

log = logging.getLogger(__name__)


def read_text_lines(spark: SparkSession, files: Sequence[str], local: Mapping[str, str] | None = None) -> DataFrame:
    """Every physical line of text files: ``_source_file`` (as listed), ``_mono`` (orders lines in a file), ``value``.

    Each file is read on its own (from its local copy in ``local``, when given) so that its path is
    exactly the listed one. Spark's text reader splits on LF, CRLF and CR and keeps invalid UTF-8
    bytes (cleaned in transform_number_lines).
    """
    local = local or {}
    frames = [
        spark.read.text(local.get(path, path)).select(
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
    ``value``. Output: ``_source_file``, ``_row_number``, ``_line``. Within one file Spark reads
    splits in byte order, so (partition, position) orders the lines; the row number is the
    number of lines in the file's earlier partitions plus the position in this one.
    """
    part = F.shiftright(F.col(MONO), 33)
    counts = df.groupBy(SOURCE_FILE, part.alias("_part")).agg(F.count(F.lit(1)).alias("_n"))
    earlier = Window.partitionBy(SOURCE_FILE).orderBy("_part").rowsBetween(Window.unboundedPreceding, -1)
    offsets = counts.select(SOURCE_FILE, "_part", F.coalesce(F.sum("_n").over(earlier), F.lit(0)).alias("_offset"))
    numbered = df.withColumn("_part", part).join(F.broadcast(offsets), [SOURCE_FILE, "_part"])
    row_number = (F.col("_offset") + F.col(MONO) - F.shiftleft(F.col("_part"), 33) + 1).cast("long")
    # Invalid UTF-8 bytes become U+FFFD instead of reaching Delta as broken strings.
    line = F.make_valid_utf8(F.col("value"))
    line = F.regexp_replace(line, "\r$", "")
    out = numbered.select(SOURCE_FILE, row_number.alias(ROW_NUMBER), line.alias(LINE))
    # A byte order mark only ever starts a file.
    out = out.withColumn(LINE, F.when(F.col(ROW_NUMBER) == 1, F.regexp_replace(LINE, "^\ufeff", ""))
                         .otherwise(F.col(LINE)))
    return out if keep_blank else out.where(~F.col(LINE).rlike(r"^\s*$"))


