"""The record checks: every reason a landed record is quarantined, the valid rows typed, the quarantine rows."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from functools import reduce

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdp.datasets import STORED_BATCH_DATE, STORED_ID
from cdp.identities import normalize
from cdp.ingestion.layout import (
    CORRUPT,
    DROPPED,
    MALFORMED,
    MALFORMED_CODE,
    PERMISSIVE,
    RAW,
    REASONS,
    STRINGS,
    TYPED,
    UnreadableFile,
)
from cdp.ingestion.reasons import (
    BAD_FORMAT,
    BAD_IDENTITY_FORMAT,
    BLOCKED_IDENTITY,
    DUPLICATE_EVENT_ID,
    FUTURE_TIMESTAMP,
    IDENTITY_TOO_LONG,
    MALFORMED_RECORD,
    MISSING_REQUIRED,
    NO_IDENTITY,
    NOT_IN_ENUM,
    NUMBER_OVERFLOW,
    RECORD_TOO_LARGE,
    TOO_MANY_IDENTITIES,
    WRONG_TYPE,
)
from cdp.lake import QUARANTINE
from cdp.schemas import BATCH_DATE, RECORD_TS, ROW_NUMBER, SOURCE_FILE, dataset_struct, spark_type
from cdp.workspace.models import FieldSpec, Guardrails, Namespace, SchemaSpec

log = logging.getLogger(__name__)


# Deliberately simple shapes: they catch values in the wrong column, not every RFC corner.
EMAIL_PATTERN = r"^[^@\s]+@([^@\s.]+\.)+[^@\s.]{2,}$"
PHONE_PATTERN = r"^\+?[0-9 ().-]+$"
PHONE_DIGITS = (7, 15)
URI_PATTERN = r"^[A-Za-z][A-Za-z0-9+.-]*://\S+$"
# Spark's casts accept "2024" as a date and a timestamp; a data engineer means a full date.
DATE_PATTERN = r"^\s*\d{4}-\d{2}-\d{2}\s*$"
TIMESTAMP_PATTERN = r"^\s*\d{4}-\d{2}-\d{2}([T ].*)?$"
# Well-formed numbers: when one of these does not cast, the value is out of range, not of the wrong type.
INTEGER_PATTERN = r"^\s*[+-]?[0-9]+\s*$"
DECIMAL_PATTERN = r"^\s*[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?\s*$"
NON_FINITE_PATTERN = r"(?i)^\s*[+-]?(nan|inf|infinity)\s*$"
_INTEGER_RANGES = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}

_FORMAT_HINTS = {
    "email": "email address (expected local@domain.tld)",
    "phone": "phone number (expected 7 to 15 digits, optionally a leading +)",
    "uri": "URI (expected a scheme such as https://)",
}
_SHOWN_CHARS = 80



def _shown(value: Column) -> Column:
    """A value as quoted in a message: long values are cut so that messages stay readable."""
    return F.when(F.length(value) > _SHOWN_CHARS, F.concat(F.substring(value, 1, _SHOWN_CHARS - 3), F.lit("...")))\
        .otherwise(value)


def _type_description(spec: FieldSpec) -> str:
    if spec.type == "decimal":
        return f"decimal({spec.precision},{spec.scale})"
    return {
        "integer": "integer", "long": "long integer", "double": "number", "boolean": "boolean",
        "date": "date (YYYY-MM-DD)", "timestamp": "timestamp (ISO 8601, e.g. 2024-01-31T09:30:00Z)",
        "object": "JSON object of the declared shape", "array": "JSON array of the declared shape",
        "map": "JSON object (map) of the declared shape",
    }.get(spec.type, spec.type)


def _typed(spec: FieldSpec, value: Column) -> Column:
    """The value cast to the field's declared type; null when it does not cast."""
    target = spark_type(spec)
    if spec.type == "string":
        return value
    if spec.type == "date":
        return F.when(value.rlike(DATE_PATTERN), value.try_cast(target))
    if spec.type == "timestamp":
        return F.when(value.rlike(TIMESTAMP_PATTERN), value.try_cast(target))
    if spec.type in ("object", "array", "map"):
        # Wrapping the value as {"v": ...} lets the corrupt-record column flag any mismatch,
        # including a wrong type deep inside the value (from_json alone would null it silently).
        wrapper = T.StructType([T.StructField("v", target, True), T.StructField(CORRUPT, T.StringType(), True)])
        parsed = F.from_json(F.concat(F.lit('{"v":'), value, F.lit("}")), wrapper, PERMISSIVE)
        return F.when(parsed[CORRUPT].isNull(), parsed["v"])
    if spec.type == "double":
        # NaN and Infinity are no JSON numbers, and no value a data engineer means by a number.
        return F.when(~value.rlike(NON_FINITE_PATTERN), value.try_cast(target))
    return value.try_cast(target)  # ANSI-safe: overflow and junk give null, not an error


def _no_reasons() -> Column:
    """An empty array of reasons (of the type _reason builds)."""
    return F.filter(F.array(_reason(MALFORMED_RECORD, None, "")), lambda _: F.lit(False))


def _reason(code: str, field: str | None, message: Column | str) -> Column:
    return F.struct(
        F.lit(code).alias("code"),
        (F.lit(field) if field is not None else F.lit(None).cast("string")).alias("field"),
        (F.lit(message) if isinstance(message, str) else message).alias("message"),
    )


def _present(value: Column) -> Column:
    return value.isNotNull() & ~value.rlike(r"^\s*$")


def _overflow(spec: FieldSpec, value: Column, typed: Column) -> tuple[Column, str] | None:
    """When a present value is a well-formed number that does not fit the field's type, and how to say so."""
    if spec.type in _INTEGER_RANGES:
        low, high = _INTEGER_RANGES[spec.type]
        return (value.rlike(INTEGER_PATTERN) & typed.isNull(),
                f"value '%s' is out of range for {_type_description(spec)} ({low} to {high})")
    if spec.type == "decimal":
        return (value.rlike(DECIMAL_PATTERN) & typed.isNull(),
                f"value '%s' does not fit decimal({spec.precision},{spec.scale}) "
                f"(at most {spec.precision - spec.scale} digits before the decimal point)")
    return None


def _full_match(value: Column, pattern: str) -> Column:
    return value.rlike(f"^(?:{pattern})$")


def transform_check(parsed: DataFrame, schema: SchemaSpec, guardrails: Guardrails,
                    namespaces: Mapping[str, Namespace] | None = None, run_date: dt.date | None = None,
                    stored_ids: DataFrame | None = None) -> DataFrame:
    """Add the typed values (``_t``) and every reason that applies (``_reasons``, empty when valid).

    A malformed record gets only ``malformed_record``. Duplicate event ids are judged within this
    batch (the first occurrence by (source file, row number) stays valid) and against
    ``stored_ids`` (columns ``_stored_id``, ``_stored_batch_date``: the ids the dataset table holds
    from batches *before* the run date, see cdp.datasets.stored_event_ids). Namespace patterns are
    checked when ``namespaces`` is given, future timestamps when ``run_date`` is.
    """
    strings = F.col(STRINGS)
    primary = schema.primary_identity if schema.class_ == "profile" else None
    blocked = sorted({v.strip().lower() for v in guardrails.blocked_identity_values})
    namespaces = namespaces or {}
    checks: list[Column] = []
    typed_values: dict[str, Column] = {}
    # Per identity field, the reasons its value cannot be linked: such a value is dropped from the record
    # (stored null, counted), and the record is quarantined for it only when no valid identity remains.
    identity_problems: dict[str, list[Column]] = {}
    for spec in schema.fields:
        value = strings[spec.name]
        present = _present(value)
        typed = F.when(present, _typed(spec, value))
        typed_values[spec.name] = typed
        shown = _shown(value)
        if spec.required:
            checks.append(F.when(~present, _reason(MISSING_REQUIRED, spec.name,
                                                   f"required field '{spec.name}' is missing")))
        elif primary is not None and spec.name == primary.name:
            # Profiles are upserted on their primary identity: a record without one cannot be stored.
            checks.append(F.when(~present, _reason(
                MISSING_REQUIRED, spec.name,
                f"field '{spec.name}' is missing; it is the primary identity every profile record needs")))
        overflow = _overflow(spec, value, typed)
        wrong = present & typed.isNull()
        if overflow is not None:
            checks.append(F.when(present & overflow[0], _reason(
                NUMBER_OVERFLOW, spec.name, F.format_string(overflow[1], shown))))
            wrong = wrong & ~overflow[0]
        checks.append(F.when(wrong, _reason(
            WRONG_TYPE, spec.name, F.format_string(f"value '%s' is not a valid {_type_description(spec)}", shown))))
        if spec.enum:
            compared = value if spec.type == "string" else typed.cast("string")
            checks.append(F.when(typed.isNotNull() & ~compared.isin(spec.enum), _reason(
                NOT_IN_ENUM, spec.name, F.format_string(f"value '%s' is not one of {', '.join(spec.enum)}", shown))))
        if spec.format is not None:
            trimmed = F.trim(value)
            ok = trimmed.rlike({"email": EMAIL_PATTERN, "phone": PHONE_PATTERN, "uri": URI_PATTERN}[spec.format])
            if spec.format == "phone":
                digits = F.length(F.regexp_replace(trimmed, "[^0-9]", ""))
                ok = ok & digits.between(*PHONE_DIGITS)
            checks.append(F.when(present & ~ok, _reason(
                BAD_FORMAT, spec.name, F.format_string(f"value '%s' is not a valid {_FORMAT_HINTS[spec.format]}",
                                                       shown))))
        if run_date is not None and spec.name == schema.timestamp_field:
            skew = guardrails.max_future_skew_minutes
            limit = dt.datetime.combine(run_date + dt.timedelta(days=1), dt.time(0), tzinfo=dt.UTC) + dt.timedelta(
                minutes=skew)
            checks.append(F.when(typed.cast("timestamp") > F.lit(limit), _reason(
                FUTURE_TIMESTAMP, spec.name, F.format_string(
                    f"timestamp '%s' is in the future: later than {limit:%Y-%m-%dT%H:%M:%SZ}, the end of the run "
                    f"day {run_date.isoformat()} plus {skew} minutes (guardrails.max_future_skew_minutes)",
                    shown))))
        if spec.identity is not None:
            problems = identity_problems.setdefault(spec.name, [])
            namespace = namespaces.get(spec.identity.namespace)
            if namespace is not None and namespace.pattern is not None:
                normalized = normalize(namespace.type, value, namespace.default_region)
                problems.append(F.when(normalized.isNotNull() & ~_full_match(normalized, namespace.pattern), _reason(
                    BAD_IDENTITY_FORMAT, spec.name, F.format_string(
                        f"identity value '%s' does not match the pattern of namespace {namespace.code} "
                        f"({namespace.pattern.replace('%', '%%')})", shown))))
            by_value = F.lower(F.trim(value)).isin(blocked)
            problems.append(F.when(present & by_value, _reason(
                BLOCKED_IDENTITY, spec.name,
                F.format_string("identity value '%s' is blocked (guardrails.blocked_identity_values)", shown))))
            if guardrails.blocked_patterns:
                # The first pattern that matches is the one named in the message.
                matched: Column = F.lit(None).cast("string")
                for pattern in reversed(guardrails.blocked_patterns):
                    matched = F.when(_full_match(F.trim(value), pattern), F.lit(pattern)).otherwise(matched)
                problems.append(F.when(present & ~by_value & matched.isNotNull(), _reason(
                    BLOCKED_IDENTITY, spec.name, F.format_string(
                        "identity value '%s' is blocked (guardrails.blocked_patterns: %s)", shown, matched))))
            limit_chars = guardrails.max_identity_length
            problems.append(F.when(present & (F.length(value) > limit_chars), _reason(
                IDENTITY_TOO_LONG, spec.name,
                F.format_string(f"identity value is %d characters long; at most {limit_chars} are allowed",
                                F.length(value)))))
    identity_reasons: Column = _no_reasons()
    dropped: Column = identity_reasons
    if identity_problems:
        per_field = {name: F.array_compact(F.array(*cols)) for name, cols in identity_problems.items()}
        bad = {name: F.size(col) > 0 for name, col in per_field.items()}
        valid = [(_present(strings[name]) & ~bad[name]).cast("int") for name in per_field]
        remaining = reduce(lambda a, b: a + b, valid)
        keep = remaining > 0
        if primary is not None and primary.name in bad:
            keep = keep & ~bad[primary.name]  # a profile record is stored under its primary identity
        everything = F.flatten(F.array(*per_field.values()))
        identity_reasons = F.when(keep, _no_reasons()).otherwise(everything)
        dropped = F.when(keep, everything).otherwise(_no_reasons())
        for name in per_field:
            typed_values[name] = F.when(~bad[name], typed_values[name])
    if schema.identity_fields:
        names = [f.name for f in schema.identity_fields]
        count = reduce(lambda a, b: a + b, [_present(strings[n]).cast("int") for n in names])
        checks.append(F.when(count == 0, _reason(NO_IDENTITY, None,
                                                 f"record has no identity: none of {', '.join(names)} has a value")))
        most = guardrails.max_identities_per_record
        if len(names) > most:  # otherwise no record of this schema can have too many
            checks.append(F.when(count > most, _reason(TOO_MANY_IDENTITIES, None, F.format_string(
                f"record has %d identity values; at most {most} are allowed (guardrails.max_identities_per_record)",
                count))))
    size_key = "max_event_bytes" if schema.class_ == "event" else "max_profile_record_bytes"
    max_bytes: int = getattr(guardrails, size_key)
    size = F.octet_length(F.col(RAW))
    checks.append(F.when(size > max_bytes, _reason(RECORD_TOO_LARGE, None, F.format_string(
        f"record is %d bytes; at most {max_bytes} are allowed (guardrails.{size_key})", size))))

    out = parsed
    if schema.class_ == "event" and schema.id_field is not None:
        id_value = strings[schema.id_field]
        key = F.when(F.col(MALFORMED).isNull() & _present(id_value), id_value)
        first = Window.partitionBy(key.alias("_id")).orderBy(SOURCE_FILE, ROW_NUMBER)
        out = out.withColumns({
            "_id_rank": F.row_number().over(first),
            "_id_first_file": F.first(SOURCE_FILE).over(first),
            "_id_first_row": F.first(ROW_NUMBER).over(first),
        })
        in_batch = F.when(key.isNotNull() & (F.col("_id_rank") > 1), _reason(
            DUPLICATE_EVENT_ID, schema.id_field,
            F.format_string("event id '%s' already appears in %s at row %d", _shown(id_value),
                            F.col("_id_first_file"), F.col("_id_first_row"))))
        if stored_ids is None:
            checks.append(in_batch)
        else:
            out = out.join(stored_ids.select(STORED_ID, STORED_BATCH_DATE), key == F.col(STORED_ID), "left")
            # An id already stored is reported once, naming the stored batch (the more useful of the two).
            checks.append(F.when(F.col(STORED_ID).isNotNull(), _reason(
                DUPLICATE_EVENT_ID, schema.id_field,
                F.format_string("event id '%s' is already stored in the dataset from the batch of %s",
                                _shown(id_value), F.col(STORED_BATCH_DATE).cast("string")))).otherwise(in_batch))

    # (coalesce only tells Spark the message is never null in this branch)
    code = F.coalesce(F.col(MALFORMED_CODE), F.lit(MALFORMED_RECORD)) if MALFORMED_CODE in parsed.columns \
        else F.lit(MALFORMED_RECORD)
    malformed = F.array(F.struct(code.alias("code"), F.lit(None).cast("string").alias("field"),
                                 F.coalesce(F.col(MALFORMED), F.lit("malformed record")).alias("message")))
    record_reasons = F.concat(F.array_compact(F.array(*checks)), identity_reasons)
    reasons = F.when(F.col(MALFORMED).isNotNull(), malformed).otherwise(record_reasons)
    dropped = F.when(F.col(MALFORMED).isNull() & (F.size(record_reasons) == 0), dropped).otherwise(
        _no_reasons())
    typed = F.struct(*[column.alias(name) for name, column in typed_values.items()])
    return out.select(*parsed.columns, typed.alias(TYPED), reasons.alias(REASONS), dropped.alias(DROPPED))


def transform_valid(checked: DataFrame, schema: SchemaSpec, run_date: dt.date) -> DataFrame:
    """The valid records typed as ``dataset_struct(schema)`` with their metadata columns."""
    midnight = dt.datetime.combine(run_date, dt.time(0), tzinfo=dt.UTC)
    record_ts: Column = F.lit(midnight)
    if schema.timestamp_field is not None:
        # Records without their own time sort as the start of the batch day.
        record_ts = F.coalesce(F.col(TYPED)[schema.timestamp_field].cast("timestamp"), F.lit(midnight))
    valid = checked.where(F.size(REASONS) == 0).select(
        *[F.col(TYPED)[f.name].alias(f.name) for f in schema.fields],
        F.col(SOURCE_FILE), F.col(ROW_NUMBER), F.lit(run_date).alias(BATCH_DATE), record_ts.alias(RECORD_TS),
    )
    return valid.to(dataset_struct(schema))


def transform_quarantine(checked: DataFrame, dataset: str, run_date: dt.date) -> DataFrame:
    """The rejected records as quarantine rows (QUARANTINE.schema)."""
    rejected = checked.where(F.size(REASONS) > 0).select(
        F.lit(dataset).alias("dataset"), F.lit(run_date).alias("batch_date"),
        F.col(SOURCE_FILE).alias("source_file"), F.col(ROW_NUMBER).alias("row_number"),
        F.col(RAW).alias("raw"), F.col(REASONS).alias("reasons"),
    )
    assert QUARANTINE.schema is not None
    return rejected.to(QUARANTINE.schema)


def unreadable_rows(unreadable: Sequence[UnreadableFile], dataset: str,
                    run_date: dt.date) -> list[tuple[object, ...]]:
    """One quarantine row per unreadable or duplicate file: no row number, no raw text."""
    return [(dataset, run_date, u.path, None, None, [(u.code, None, u.message)]) for u in unreadable]




def rejection_message(dataset: str, read: int, quarantined: int, allowed: float,
                      top_reasons: Sequence[tuple[str, int]]) -> str:
    """What a data engineer reads when a batch is rejected."""
    reasons = ", ".join(f"{code} {n}" for code, n in top_reasons)
    return (f"dataset {dataset}: {quarantined} of {read} records rejected "
            f"({quarantined / read:.1%} > {allowed:.1%} allowed); top reasons: {reasons}")


