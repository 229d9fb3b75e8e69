"""A dataset's landed records in the parsed layout, whatever their format."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import reduce

from pyspark.sql import DataFrame, SparkSession

from cdp.ingestion.formats.csv import csv_frames
from cdp.ingestion.formats.jsonl import transform_jsonl
from cdp.ingestion.formats.parquet import read_parquet_file, transform_parquet
from cdp.ingestion.formats.text import read_text_lines, transform_number_lines
from cdp.ingestion.landing import spark_location
from cdp.ingestion.layout import UnreadableFile, parsed_struct
from cdp.workspace.models import DatasetSpec, SchemaSpec

log = logging.getLogger(__name__)


def read_records(spark: SparkSession, dataset: DatasetSpec, schema: SchemaSpec,
                 files: Sequence[str]) -> tuple[DataFrame, list[UnreadableFile]]:
    """The landed records of a dataset in the parsed layout, and the files that could not be read.

    Every file is read in place (an S3 object through S3A, see spark_location); its records name it as listed.
    """
    unreadable: list[UnreadableFile] = []
    frames: list[DataFrame] = []
    if files and dataset.format == "parquet":
        for path in files:
            read = read_parquet_file(spark, path, spark_location(path))
            if isinstance(read, UnreadableFile):
                unreadable.append(read)
            else:
                frames.append(transform_parquet(read, schema))
    elif files:
        # CSV keeps its blank lines: inside a quoted field they are part of a record.
        locations = {path: spark_location(path) for path in files}
        lines = transform_number_lines(read_text_lines(spark, files, locations), keep_blank=dataset.format == "csv")
        if dataset.format == "jsonl":
            frames.append(transform_jsonl(lines, schema))
        else:
            frames.extend(csv_frames(lines, schema, dataset.csv))
    if not frames:
        return spark.createDataFrame([], parsed_struct(schema)), unreadable
    return reduce(DataFrame.unionByName, frames), unreadable


