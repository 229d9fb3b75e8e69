"""CSV (RFC 4180) records to the parsed layout: headers, quoted fields spanning lines."""

from __future__ import annotations

import csv
import logging
import re

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from cdp.ingestion.formats.text import encoding_problem
from cdp.ingestion.layout import (
    CORRUPT,
    INVALID_UTF8,
    LINE,
    MALFORMED,
    MALFORMED_CODE,
    PERMISSIVE,
    RAW,
    STRINGS,
    UNCLOSED,
    string_struct,
)
from cdp.ingestion.reasons import BAD_HEADER
from cdp.schemas import ROW_NUMBER, SOURCE_FILE
from cdp.workspace.models import CsvOptions, SchemaSpec

log = logging.getLogger(__name__)


def csv_frames(lines: DataFrame, schema: SchemaSpec, options: CsvOptions) -> list[DataFrame]:
    """Parse numbered CSV lines (blank ones included), one parse per distinct header.

    One small job collects, per file, its header (the first non-blank line) and whether any line
    can open a quoted field that it does not close. Only files with such a line can hold a record
    that spans lines; their lines are assembled into records (transform_csv_records), the others
    are parsed line by line, in parallel and without a shuffle.
    """
    opens, _ = _quote_steps(F.col(LINE), options)
    blank = F.col(LINE).rlike(r"^\s*$")
    files = (lines.groupBy(SOURCE_FILE)
             .agg(F.min_by(LINE, F.when(~blank, F.col(ROW_NUMBER))).alias("header"),
                  F.min(F.when(~blank, F.col(ROW_NUMBER))).alias("header_row"),
                  F.max(opens.cast("int")).alias("opens"))
             .collect())
    multiline = sorted(r[SOURCE_FILE] for r in files if r["opens"])
    single = lines.where(~blank & ~F.col(SOURCE_FILE).isin(multiline)) if multiline else lines.where(~blank)
    records = single.withColumn(UNCLOSED, F.lit(False))
    if multiline:
        records = records.unionByName(transform_csv_records(lines.where(F.col(SOURCE_FILE).isin(multiline)),
                                                            options))
    if not options.header:
        return [transform_csv(records, schema, options, None)]
    by_header: dict[tuple[str, ...], list[str]] = {}
    frames: list[DataFrame] = []
    header_rows: dict[str, int] = {}
    for row in sorted(files, key=lambda r: r[SOURCE_FILE]):
        if row["header"] is None:
            continue
        names = split_csv_header(row["header"], options)
        problem = header_problem(names, schema, options)
        if problem is not None:
            # Counts and schema names only: the "header" of a file landed without one is a record (PII).
            log.warning("file %s: its header line does not match schema %s: every record of the file is "
                        "quarantined as bad_header", row[SOURCE_FILE], schema.name)
            frames.append(transform_bad_header(records.where(F.col(SOURCE_FILE) == row[SOURCE_FILE]), schema,
                                               problem))
            continue
        unknown = [n for n in names if schema.field(n) is None]
        if unknown:
            log.warning("file %s: %d column(s) of its header are not fields of schema %s and are not ingested "
                        "(csv.unknown_columns: ignore)", row[SOURCE_FILE], len(unknown), schema.name)
        header_rows[row[SOURCE_FILE]] = row["header_row"]
        by_header.setdefault(tuple(names), []).append(row[SOURCE_FILE])
    if header_rows:  # the header line is not a record
        first = F.create_map(*[F.lit(x) for item in sorted(header_rows.items()) for x in item])[F.col(SOURCE_FILE)]
        records = records.where(F.col(ROW_NUMBER) != first)
    frames += [transform_csv(records.where(F.col(SOURCE_FILE).isin(paths)), schema, options, list(header))
               for header, paths in sorted(by_header.items())]
    return frames


def _quote_steps(line: Column, options: CsvOptions) -> tuple[Column, Column]:
    """Whether a line ends inside a quoted field: (when it starts outside one, when it starts inside one).

    RFC 4180: a field is quoted when it starts with the quote character; inside it a doubled
    quote (or the escape character, when it is not the quote) escapes the next character; a
    quote in the middle of an unquoted field (``27" screen``) is literal and opens nothing.
    """
    q, d = re.escape(options.quote), re.escape(options.delimiter)
    if options.escape and options.escape != options.quote:
        e = re.escape(options.escape)
        inner = f"(?:[^{q}{e}]|{q}{q}|{e}[\\s\\S])"
    else:
        inner = f"(?:[^{q}]|{q}{q})"
    other = f"(?:(?!{d})[\\s\\S])"  # any character but the delimiter
    # Possessive quantifiers (*+, ++): a doubled quote is never re-read as a closing quote, and long
    # lines do not backtrack.
    field = f"(?:{q}{inner}*+{q}{other}*+|(?:(?!{q}){other}++)?)"  # quoted (closed) or unquoted, maybe empty
    open_tail = f"{q}{inner}*+$"  # a quoted field still open at the end of the line
    from_outside = f"^(?:{field}{d})*+{open_tail}"
    from_inside = f"^{inner}*+$|^{inner}*+{q}{other}*+{d}(?:{field}{d})*+{open_tail}"
    return line.rlike(from_outside), line.rlike(from_inside)


def transform_csv_records(lines: DataFrame, options: CsvOptions) -> DataFrame:
    """Assemble numbered CSV lines (blank ones included) into records: a quoted field may span lines (RFC 4180).

    Each line maps "inside a quoted field or not" at its start to the same at its end
    (_quote_steps). A line whose end does not depend on its start fixes the state; the others
    keep or flip it, so the state before a line is the last fixed state before it flipped by the
    flips since. A line starts a record when it starts outside a quoted field; a record keeps the
    row number of its first line and joins its lines with ``\\n``. Blank records are dropped;
    ``_unclosed`` marks a record whose quoted field is still open at the end of the file.
    """
    from_outside, from_inside = _quote_steps(F.col(LINE), options)
    in_file = Window.partitionBy(SOURCE_FILE).orderBy(ROW_NUMBER)
    flips = from_outside & ~from_inside
    steps = lines.withColumns({"_out": from_outside, "_in": from_inside, "_flip": flips.cast("int"),
                               "_fixed": from_outside == from_inside})
    steps = steps.withColumn("_flips", F.sum("_flip").over(in_file.rowsBetween(Window.unboundedPreceding, 0)))
    last_fixed = F.last(F.when(F.col("_fixed"), F.struct(F.col("_out").alias("inside"), F.col("_flips").alias("n"))),
                        ignorenulls=True).over(in_file.rowsBetween(Window.unboundedPreceding, -1))
    flips_since = F.col("_flips") - F.col("_flip") - F.coalesce(last_fixed["n"], F.lit(0))
    inside_before = F.coalesce(last_fixed["inside"], F.lit(False)) != (flips_since % 2 == 1)
    steps = steps.withColumn("_inside_before", inside_before)
    steps = steps.withColumn("_inside_after", F.when(F.col("_inside_before"), F.col("_in")).otherwise(F.col("_out")))
    first_row = F.max(F.when(~F.col("_inside_before"), F.col(ROW_NUMBER))).over(
        in_file.rowsBetween(Window.unboundedPreceding, 0))
    grouped = (steps.withColumn("_first", first_row)
               .groupBy(SOURCE_FILE, "_first")
               .agg(F.sort_array(F.collect_list(F.struct(ROW_NUMBER, LINE))).alias("_lines"),
                    F.max_by("_inside_after", ROW_NUMBER).alias(UNCLOSED),
                    F.max(INVALID_UTF8).alias(INVALID_UTF8)))
    text = F.array_join(F.transform("_lines", lambda x: x[LINE]), "\n")
    return (grouped.select(SOURCE_FILE, F.col("_first").alias(ROW_NUMBER), text.alias(LINE), UNCLOSED, INVALID_UTF8)
            .where(~F.col(LINE).rlike(r"^\s*$")))


def split_csv_header(line: str, options: CsvOptions) -> list[str]:
    """Column names of a CSV header line (trimmed)."""
    if len(options.delimiter) == 1:
        reader = csv.reader([line], delimiter=options.delimiter, quotechar=options.quote,
                            escapechar=options.escape or None)
        names = next(reader, [])
    else:  # Python's csv takes one-character delimiters only; header names rarely need quoting
        names = [n.strip().strip(options.quote) for n in line.split(options.delimiter)]
    return [n.strip() for n in names]


def header_problem(names: list[str], schema: SchemaSpec, options: CsvOptions) -> str | None:
    """Why a CSV header line does not match the schema (None when it does).

    Every required field (and a profile schema's primary identity) must be a column, no column may
    appear twice, and every column must be a declared field unless ``csv.unknown_columns: ignore``.
    """
    problems = []
    required = [f.name for f in schema.fields if f.required or (schema.class_ == "profile" and f.identity is not None
                                                               and f.identity.primary)]
    missing = [name for name in required if name not in names]
    if missing:
        problems.append(f"required field(s) {', '.join(missing)} are not among its columns")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        problems.append(f"column(s) {', '.join(twice)} appear more than once")
    unknown = [n for n in names if schema.field(n) is None]
    if unknown and options.unknown_columns == "reject":
        problems.append(f"column(s) {', '.join(unknown)} are not fields of schema {schema.name} (declare them, or "
                        "set csv.unknown_columns: ignore in the dataset)")
    if not problems:
        return None
    hint = (" If the file has no header line, set csv.header: false in the dataset."
            if not any(schema.field(n) is not None for n in names) else "")
    return (f"the file's header line does not match schema {schema.name}: {'; '.join(problems)}. Every record of "
            f"the file is quarantined, its first line included; fix the file and re-run the day.{hint}")


def transform_bad_header(lines: DataFrame, schema: SchemaSpec, message: str) -> DataFrame:
    """Every record of a file whose header does not match (its first line included) as a ``bad_header`` record."""
    return lines.select(
        SOURCE_FILE, ROW_NUMBER, F.col(LINE).alias(RAW), F.lit(message).alias(MALFORMED),
        F.lit(BAD_HEADER).alias(MALFORMED_CODE),
        F.lit(None).cast(string_struct(schema)).alias(STRINGS),
    )


def transform_csv(lines: DataFrame, schema: SchemaSpec, options: CsvOptions, header: list[str] | None) -> DataFrame:
    """CSV records (``_source_file``, ``_row_number``, ``_line``, optional ``_unclosed``) to the parsed layout.

    With a ``header`` (whose line the caller has removed from ``lines``), columns are matched to
    declared fields by name; without one, columns are the declared fields in order. A record with
    more or fewer columns than that, or whose quoted field is never closed, is a malformed record.
    """
    columns = header if header is not None else [f.name for f in schema.fields]
    positional = ", ".join([f"_c{i} STRING" for i in range(len(columns))] + [f"{CORRUPT} STRING"])
    parsed = F.from_csv(F.col(LINE), positional, {
        **PERMISSIVE, "sep": options.delimiter, "quote": options.quote, "escape": options.escape})
    where = "of the header" if header is not None else "the schema declares"
    malformed = F.when(parsed[CORRUPT].isNotNull(),
                       F.lit(f"row does not have the {len(columns)} columns {where}"))
    if UNCLOSED in lines.columns:
        malformed = F.when(F.col(UNCLOSED), F.lit(
            "a quoted field opened in this record is not closed before the end of the file")).otherwise(malformed)

    def value(name: str) -> Column:
        return parsed[f"_c{columns.index(name)}"] if name in columns else F.lit(None).cast("string")

    encoding, code = encoding_problem()
    malformed = F.coalesce(encoding, malformed)
    return lines.select(
        SOURCE_FILE, ROW_NUMBER, F.col(LINE).alias(RAW), malformed.alias(MALFORMED), code.alias(MALFORMED_CODE),
        F.struct(*[value(f.name).alias(f.name) for f in schema.fields]).alias(STRINGS),
    )


