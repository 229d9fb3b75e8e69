"""A dataset's landed records in the parsed layout, whatever their format."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from functools import reduce

from pyspark.sql import DataFrame, SparkSession

from cdp.ingestion.formats.csv import csv_frames
from cdp.ingestion.formats.jsonl import transform_jsonl
from cdp.ingestion.formats.parquet import read_parquet_file, transform_parquet
from cdp.ingestion.formats.text import read_text_lines, transform_number_lines
from cdp.ingestion.layout import UnreadableFile, parsed_struct
from cdp.workspace.models import DatasetSpec, SchemaSpec

log = logging.getLogger(__name__)


def read_records(spark: SparkSession, dataset: DatasetSpec, schema: SchemaSpec, files: Sequence[str],
                 local: Mapping[str, str] | None = None) -> tuple[DataFrame, list[UnreadableFile]]:
    """The landed records of a dataset in the parsed layout, and the files that could not be read.

    ``local`` maps a listed path to the local copy to read (see download_landed_files).
    """
    local = local or {}
    unreadable: list[UnreadableFile] = []
    frames: list[DataFrame] = []
    if files and dataset.format == "parquet":
        for path in files:
            read = read_parquet_file(spark, path, local.get(path))
            if isinstance(read, UnreadableFile):
                unreadable.append(read)
            else:
                frames.append(transform_parquet(read, schema))
    elif files:
        # CSV keeps its blank lines: inside a quoted field they are part of a record.
        lines = transform_number_lines(read_text_lines(spark, files, local), keep_blank=dataset.format == "csv")
        if dataset.format == "jsonl":
            frames.append(transform_jsonl(lines, schema))
        else:
            frames.extend(csv_frames(lines, schema, dataset.csv))
    if not frames:
        return spark.createDataFrame([], parsed_struct(schema)), unreadable
    return reduce(DataFrame.unionByName, frames), unreadable


