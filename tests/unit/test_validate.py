"""Validation transforms: every reason code with its exact field and message, encodings, CSV shapes."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from cdp.datasets import STORED_BATCH_DATE, STORED_ID
from cdp.ingestion.checks import rejection_message, transform_check, transform_quarantine, transform_valid
from cdp.ingestion.formats.csv import transform_csv
from cdp.ingestion.formats.jsonl import transform_jsonl
from cdp.ingestion.formats.parquet import read_parquet_file
from cdp.ingestion.formats.text import read_text_lines, transform_number_lines
from cdp.ingestion.landing import list_landed_files
from cdp.ingestion.layout import LINE, RAW, REASONS, UnreadableFile
from cdp.ingestion.records import read_records
from cdp.schemas import ROW_NUMBER, SOURCE_FILE
from cdp.settings import Settings
from cdp.workspace.models import CsvOptions, DatasetSpec, Guardrails, Namespace, SchemaSpec

MEMBER = SchemaSpec.model_validate({
    "name": "member", "class": "profile", "timestamp_field": "updated_at",
    "fields": [
        {"name": "member_id", "type": "string", "required": True, "identity": {"namespace": "member", "primary": True}},
        {"name": "email", "type": "string", "format": "email", "identity": {"namespace": "email"}},
        {"name": "phone", "type": "string", "format": "phone", "identity": {"namespace": "phone"}},
        {"name": "tier", "type": "string", "enum": ["bronze", "silver", "gold", "platinum"]},
        {"name": "points", "type": "long"},
        {"name": "visits", "type": "integer"},
        {"name": "joined_on", "type": "date"},
        {"name": "site", "type": "string", "format": "uri"},
        {"name": "prefs", "type": "object", "fields": [{"name": "news", "type": "boolean"}]},
        {"name": "tags", "type": "array", "items": {"name": "tag", "type": "string"}},
        {"name": "updated_at", "type": "timestamp", "required": True},
    ],
})

CLICK = SchemaSpec.model_validate({
    "name": "click", "class": "event", "id_field": "event_id", "timestamp_field": "ts",
    "event_type_field": "kind",
    "fields": [
        {"name": "event_id", "type": "string", "required": True},
        {"name": "kind", "type": "string", "required": True, "enum": ["view", "buy"]},
        {"name": "ts", "type": "timestamp", "required": True},
        {"name": "ecid", "type": "string", "identity": {"namespace": "ecid", "primary": True}},
    ],
})

LINES = T.StructType([
    T.StructField(SOURCE_FILE, T.StringType(), False),
    T.StructField(ROW_NUMBER, T.LongType(), True),
    T.StructField(LINE, T.StringType(), True),
])

OK = '"member_id": "M1", "updated_at": "2024-01-05T10:00:00Z"'  # the two required fields, valid

Reasons = list[tuple[str, str | None, str]]


def lines_df(spark: SparkSession, lines: list[str], source: str = "/in/a.jsonl") -> DataFrame:
    return spark.createDataFrame([(source, i, line) for i, line in enumerate(lines, 1)], LINES)


def check_jsonl(spark: SparkSession, lines: list[str], schema: SchemaSpec = MEMBER,
                guardrails: Guardrails | None = None) -> list[Reasons]:
    """The reasons of each line, in line order."""
    checked = transform_check(transform_jsonl(lines_df(spark, lines), schema), schema, guardrails or Guardrails())
    rows = checked.orderBy(SOURCE_FILE, ROW_NUMBER).collect()
    return [[(r["code"], r["field"], r["message"]) for r in row[REASONS]] for row in rows]


def one(spark: SparkSession, extra: str, guardrails: Guardrails | None = None) -> Reasons:
    """The reasons of one member record: the valid base plus ``extra`` JSON members."""
    return check_jsonl(spark, ["{" + OK + ", " + extra + "}"], MEMBER, guardrails)[0]


def test_valid_record_has_no_reasons_and_is_typed(spark: SparkSession) -> None:
    line = ('{"member_id": "M1", "email": "ann@example.com", "phone": "+33 (6) 12-34.56.78", "tier": "gold", '
            '"points": 120, "visits": "7", "joined_on": "2023-02-01", "site": "https://example.com/ann", '
            '"prefs": {"news": true}, "tags": ["a", "b"], "updated_at": "2024-01-05T10:00:00+01:00"}')
    checked = transform_check(transform_jsonl(lines_df(spark, [line]), MEMBER), MEMBER, Guardrails())
    valid = transform_valid(checked, MEMBER, dt.date(2024, 1, 6)).collect()
    assert [r.asDict(recursive=True) for r in valid] == [{
        "member_id": "M1", "email": "ann@example.com", "phone": "+33 (6) 12-34.56.78", "tier": "gold",
        "points": 120, "visits": 7, "joined_on": dt.date(2023, 2, 1), "site": "https://example.com/ann",
        "prefs": {"news": True}, "tags": ["a", "b"], "updated_at": dt.datetime(2024, 1, 5, 9, 0),
        "_source_file": "/in/a.jsonl", "_row_number": 1, "_batch_date": dt.date(2024, 1, 6),
        "_record_ts": dt.datetime(2024, 1, 5, 9, 0),
    }]


def test_missing_required(spark: SparkSession) -> None:
    assert check_jsonl(spark, ['{"member_id": "M1", "updated_at": "  "}'])[0] == [
        ("missing_required", "updated_at", "required field 'updated_at' is missing")]


def test_primary_identity_is_required_for_profiles(spark: SparkSession) -> None:
    schema = MEMBER.model_copy(update={"fields": [
        f.model_copy(update={"required": False}) if f.name == "member_id" else f for f in MEMBER.fields]})
    assert check_jsonl(spark, ['{"email": "ann@example.com", "updated_at": "2024-01-05"}'], schema)[0] == [
        ("missing_required", "member_id",
         "field 'member_id' is missing; it is the primary identity every profile record needs")]


@pytest.mark.parametrize(("extra", "field", "message"), [
    ('"points": "12abc"', "points", "value '12abc' is not a valid long integer"),
    ('"visits": 2.5', "visits", "value '2.5' is not a valid integer"),
    ('"joined_on": "2023-02-30"', "joined_on", "value '2023-02-30' is not a valid date (YYYY-MM-DD)"),
    ('"joined_on": "2023"', "joined_on", "value '2023' is not a valid date (YYYY-MM-DD)"),
    ('"prefs": {"news": "maybe"}', "prefs", """value '{"news":"maybe"}' is not a valid JSON object of the"""
                                            " declared shape"),
    ('"tags": "a,b"', "tags", "value 'a,b' is not a valid JSON array of the declared shape"),
])
def test_wrong_type(spark: SparkSession, extra: str, field: str, message: str) -> None:
    assert one(spark, extra) == [("wrong_type", field, message)]


def test_unparsable_timestamp(spark: SparkSession) -> None:
    assert check_jsonl(spark, ['{"member_id": "M1", "updated_at": "yesterday"}'])[0] == [
        ("wrong_type", "updated_at",
         "value 'yesterday' is not a valid timestamp (ISO 8601, e.g. 2024-01-31T09:30:00Z)")]


def test_not_in_enum(spark: SparkSession) -> None:
    assert one(spark, '"tier": "diamond"') == [
        ("not_in_enum", "tier", "value 'diamond' is not one of bronze, silver, gold, platinum")]


@pytest.mark.parametrize(("extra", "field", "message"), [
    ('"email": "ann@example"', "email",
     "value 'ann@example' is not a valid email address (expected local@domain.tld)"),
    ('"phone": "12-34"', "phone",
     "value '12-34' is not a valid phone number (expected 7 to 15 digits, optionally a leading +)"),
    ('"phone": "call 0612345678"', "phone",
     "value 'call 0612345678' is not a valid phone number (expected 7 to 15 digits, optionally a leading +)"),
    ('"site": "www.example.com"', "site",
     "value 'www.example.com' is not a valid URI (expected a scheme such as https://)"),
])
def test_bad_format(spark: SparkSession, extra: str, field: str, message: str) -> None:
    assert one(spark, extra) == [("bad_format", field, message)]


def test_no_identity(spark: SparkSession) -> None:
    assert check_jsonl(spark, ['{"event_id": "e1", "kind": "view", "ts": "2024-01-05T10:00:00Z"}'], CLICK)[0] == [
        ("no_identity", None, "record has no identity: none of ecid has a value")]


def test_blocked_identity(spark: SparkSession) -> None:
    assert one(spark, '"email": "  Anonymous "') == [
        ("bad_format", "email",
         "value '  Anonymous ' is not a valid email address (expected local@domain.tld)"),
        ("blocked_identity", "email",
         "identity value '  Anonymous ' is blocked (guardrails.blocked_identity_values)")]


def test_identity_too_long(spark: SparkSession) -> None:
    assert one(spark, '"phone": "+331234567890"', guardrails=Guardrails(max_identity_length=10)) == [
        ("identity_too_long", "phone", "identity value is 13 characters long; at most 10 are allowed")]


def test_every_reason_of_a_row_is_kept_in_field_order(spark: SparkSession) -> None:
    line = '{"member_id": "null", "email": "x", "tier": "diamond", "points": "many"}'
    assert check_jsonl(spark, [line])[0] == [
        ("blocked_identity", "member_id", "identity value 'null' is blocked (guardrails.blocked_identity_values)"),
        ("bad_format", "email", "value 'x' is not a valid email address (expected local@domain.tld)"),
        ("not_in_enum", "tier", "value 'diamond' is not one of bronze, silver, gold, platinum"),
        ("wrong_type", "points", "value 'many' is not a valid long integer"),
        ("missing_required", "updated_at", "required field 'updated_at' is missing"),
    ]


def test_no_identity_comes_with_the_missing_primary(spark: SparkSession) -> None:
    assert check_jsonl(spark, ['{"updated_at": "2024-01-05"}'])[0] == [
        ("missing_required", "member_id", "required field 'member_id' is missing"),
        ("no_identity", None, "record has no identity: none of member_id, email, phone has a value"),
    ]


def test_malformed_lines_get_only_malformed_record(spark: SparkSession) -> None:
    assert check_jsonl(spark, ['{"member_id": "M1", "tier": "diamond"', "[1, 2]", '"M1"', "M1,gold"]) == [
        [("malformed_record", None, "line is not valid JSON")],
        [("malformed_record", None, "line is valid JSON but not an object")],
        [("malformed_record", None, "line is valid JSON but not an object")],
        [("malformed_record", None, "line is not valid JSON")],
    ]


def test_duplicate_event_ids_keep_the_first_by_file_and_row(spark: SparkSession) -> None:
    base = '"kind": "view", "ts": "2024-01-05T10:00:00Z", "ecid": "E1"'
    b = lines_df(spark, ['{"event_id": "e1", ' + base + "}"], "/in/b.jsonl")
    a = lines_df(spark, ['{"event_id": "e1", ' + base + "}", '{"event_id": "e2", ' + base + "}",
                         '{"event_id": "e1", ' + base + "}"], "/in/a.jsonl")
    checked = transform_check(transform_jsonl(b.union(a), CLICK), CLICK, Guardrails())
    rows = checked.orderBy(SOURCE_FILE, ROW_NUMBER).collect()
    duplicate = [("duplicate_event_id", "event_id", "event id 'e1' already appears in /in/a.jsonl at row 1")]
    assert [(r[SOURCE_FILE], r[ROW_NUMBER], [tuple(x) for x in r[REASONS]]) for r in rows] == [
        ("/in/a.jsonl", 1, []),
        ("/in/a.jsonl", 2, []),
        ("/in/a.jsonl", 3, duplicate),
        ("/in/b.jsonl", 1, duplicate),
    ]


def test_quarantine_rows(spark: SparkSession) -> None:
    checked = transform_check(transform_jsonl(lines_df(spark, ["{" + OK + "}", "oops"]), MEMBER), MEMBER,
                                Guardrails())
    rows = transform_quarantine(checked, "members", dt.date(2024, 1, 5)).collect()
    assert [r.asDict(recursive=True) for r in rows] == [{
        "dataset": "members", "batch_date": dt.date(2024, 1, 5), "source_file": "/in/a.jsonl", "row_number": 2,
        "raw": "oops", "reasons": [{"code": "malformed_record", "field": None, "message": "line is not valid JSON"}],
    }]


def test_bom_crlf_invalid_utf8_and_blank_lines(spark: SparkSession, tmp_path: Path) -> None:
    path = tmp_path / "hits.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"member_id": "M1", "updated_at": "2024-01-05"}\r\n'
                     b"\r\n"
                     b"   \r\n"
                     b'{"member_id": "M\xe9", "updated_at": "2024-01-05"}\r\n'
                     b'{"member_id": "M3", "updated_at": "2024-01-05"}')
    lines = transform_number_lines(read_text_lines(spark, [str(path)]))
    assert [(r[SOURCE_FILE], r[ROW_NUMBER], r[LINE]) for r in lines.orderBy(ROW_NUMBER).collect()] == [
        (str(path), 1, '{"member_id": "M1", "updated_at": "2024-01-05"}'),
        (str(path), 4, '{"member_id": "M\ufffd", "updated_at": "2024-01-05"}'),
        (str(path), 5, '{"member_id": "M3", "updated_at": "2024-01-05"}'),
    ]
    checked = transform_check(transform_jsonl(lines, MEMBER), MEMBER, Guardrails())
    valid = transform_valid(checked, MEMBER, dt.date(2024, 1, 5))
    assert [(r["member_id"], r[ROW_NUMBER]) for r in valid.orderBy(ROW_NUMBER).collect()] == [
        ("M1", 1), ("M\ufffd", 4), ("M3", 5)]


def test_line_numbers_hold_when_files_are_split(spark: SparkSession, tmp_path: Path) -> None:
    # Tiny splits make Spark read each file in several partitions, as it does with large files.
    paths = []
    for name, count in (("a.jsonl", 12), ("b.jsonl", 5)):
        path = tmp_path / name
        path.write_text("".join(f"{name}-{n}\n" for n in range(1, count + 1)))
        paths.append(str(path))
    previous = spark.conf.get("spark.sql.files.maxPartitionBytes")
    spark.conf.set("spark.sql.files.maxPartitionBytes", "16")
    try:
        lines = transform_number_lines(read_text_lines(spark, paths)).collect()
    finally:
        spark.conf.set("spark.sql.files.maxPartitionBytes", previous)
    assert sorted((r[SOURCE_FILE], r[ROW_NUMBER], r[LINE]) for r in lines) == sorted(
        [(paths[0], n, f"a.jsonl-{n}") for n in range(1, 13)] + [(paths[1], n, f"b.jsonl-{n}") for n in range(1, 6)])


def test_csv_column_counts_and_header_mapping(spark: SparkSession, tmp_path: Path) -> None:
    # Columns in another order than declared; an undeclared column; a BOM and CRLF line ends.
    path = tmp_path / "members.csv"
    path.write_bytes(b"\xef\xbb\xbfupdated_at,member_id,note,tier\r\n"
                     b"2024-01-05,M1,hi,gold\r\n"
                     b"2024-01-05,M2,hi,gold,extra\r\n"
                     b"2024-01-05,M3\r\n"
                     b'2024-01-05,"M4, Jr",,\r\n'
                     b"2024-01-05,M5,,diamond\r\n")
    dataset = DatasetSpec.model_validate({"name": "members", "schema": "member", "format": "csv",
                                          "source": {"path": "members/{date}"}})
    parsed, unreadable = read_records(spark, dataset, MEMBER, [str(path)])
    assert unreadable == []
    checked = transform_check(parsed, MEMBER, Guardrails())
    rows = checked.orderBy(ROW_NUMBER).collect()
    malformed = [("malformed_record", None, "row does not have the 4 columns of the header")]
    assert [(r[ROW_NUMBER], r[RAW], [tuple(x) for x in r[REASONS]]) for r in rows] == [
        (2, "2024-01-05,M1,hi,gold", []),
        (3, "2024-01-05,M2,hi,gold,extra", malformed),
        (4, "2024-01-05,M3", malformed),
        (5, '2024-01-05,"M4, Jr",,', []),
        (6, "2024-01-05,M5,,diamond",
         [("not_in_enum", "tier", "value 'diamond' is not one of bronze, silver, gold, platinum")]),
    ]
    valid = transform_valid(checked, MEMBER, dt.date(2024, 1, 5)).orderBy(ROW_NUMBER).collect()
    assert [(r["member_id"], r["tier"], r["updated_at"]) for r in valid] == [
        ("M1", "gold", dt.datetime(2024, 1, 5)), ("M4, Jr", None, dt.datetime(2024, 1, 5))]


def test_csv_without_header_uses_declared_order(spark: SparkSession) -> None:
    schema = SchemaSpec.model_validate({"name": "s", "class": "profile", "fields": [
        {"name": "id", "type": "string", "identity": {"namespace": "x", "primary": True}},
        {"name": "n", "type": "integer"}]})
    options = CsvOptions(delimiter=";", header=False)
    lines = lines_df(spark, ["a;1", "b;2;3", "c"], "/in/s.csv")
    checked = transform_check(transform_csv(lines, schema, options, None), schema, Guardrails())
    assert [[x["code"] for x in r[REASONS]] for r in checked.orderBy(ROW_NUMBER).collect()] == [
        [], ["malformed_record"], ["malformed_record"]]
    valid = transform_valid(checked, schema, dt.date(2024, 1, 5)).collect()
    # No timestamp field: records are stamped with the start of the batch day (UTC).
    assert [(r["id"], r["n"], r["_record_ts"]) for r in valid] == [("a", 1, dt.datetime(2024, 1, 5))]


def test_unreadable_parquet_file(spark: SparkSession, tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"definitely not parquet")
    read = read_parquet_file(spark, str(path))
    assert isinstance(read, UnreadableFile)
    assert read.path == str(path)
    assert read.message.startswith("file cannot be read as Parquet: ")
    assert "is not a Parquet file" in read.message


def test_list_landed_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(workspace="ws", lake="lake", landing=str(tmp_path), exports="exports")
    dataset = DatasetSpec.model_validate({"name": "web", "schema": "click", "format": "jsonl",
                                          "source": {"path": "web/{date}"}})
    with caplog.at_level(logging.WARNING, logger="jobs.validate"):
        assert list_landed_files(settings, dataset, dt.date(2024, 1, 5)) == []
    assert f"landing folder {tmp_path}/web/2024-01-05 does not exist" in caplog.text
    folder = tmp_path / "web" / "2024-01-05"
    (folder / "sub").mkdir(parents=True)
    for name in ("b.jsonl", "a.jsonl", "_SUCCESS", ".a.jsonl.crc"):
        (folder / name).write_text("")
    assert list_landed_files(settings, dataset, dt.date(2024, 1, 5)) == [str(folder / "a.jsonl"),
                                                                           str(folder / "b.jsonl")]


def test_rejection_message() -> None:
    assert rejection_message("web_events", 10, 3, 0.1, [("not_in_enum", 2), ("missing_required", 1)]) == (
        "dataset web_events: 3 of 10 records rejected (30.0% > 10.0% allowed); "
        "top reasons: not_in_enum 2, missing_required 1")


# ---------------------------------------------------------------- number range, time, identities, size

ORDER = SchemaSpec.model_validate({
    "name": "order", "class": "profile",
    "fields": [
        {"name": "order_id", "type": "string", "identity": {"namespace": "order", "primary": True}},
        {"name": "qty", "type": "integer"},
        {"name": "views", "type": "long"},
        {"name": "amount", "type": "decimal", "precision": 5, "scale": 2},
    ],
})


@pytest.mark.parametrize(("extra", "reasons"), [
    ('"qty": 2147483648', [("number_overflow", "qty",
                            "value '2147483648' is out of range for integer (-2147483648 to 2147483647)")]),
    ('"qty": "-2147483649"', [("number_overflow", "qty",
                               "value '-2147483649' is out of range for integer (-2147483648 to 2147483647)")]),
    ('"qty": 2147483647', []),
    ('"views": 9223372036854775808', [("number_overflow", "views", "value '9223372036854775808' is out of range "
                                       "for long integer (-9223372036854775808 to 9223372036854775807)")]),
    ('"amount": 1234.5', [("number_overflow", "amount",
                           "value '1234.5' does not fit decimal(5,2) (at most 3 digits before the decimal point)")]),
    ('"amount": 999.99', []),
    # Not a number at all: still a wrong type, not an overflow.
    ('"amount": "12,5"', [("wrong_type", "amount", "value '12,5' is not a valid decimal(5,2)")]),
    ('"qty": "1e3"', [("wrong_type", "qty", "value '1e3' is not a valid integer")]),
])
def test_number_overflow_is_told_apart_from_wrong_type(spark: SparkSession, extra: str, reasons: Reasons) -> None:
    assert check_jsonl(spark, ['{"order_id": "O1", ' + extra + "}"], ORDER)[0] == reasons


def test_future_timestamp_beyond_the_skew(spark: SparkSession) -> None:
    def reasons(ts: str, skew: int = 60) -> Reasons:
        line = '{"event_id": "e1", "kind": "view", "ts": "' + ts + '", "ecid": "E1"}'
        checked = transform_check(transform_jsonl(lines_df(spark, [line]), CLICK), CLICK,
                                    Guardrails(max_future_skew_minutes=skew), run_date=dt.date(2024, 1, 5))
        return [tuple(r) for r in checked.first()[REASONS]]  # type: ignore[index]

    # The run day ends at 2024-01-06T00:00Z; one hour of skew is tolerated.
    assert reasons("2024-01-06T01:00:00Z") == []
    assert reasons("2024-01-06T02:59:00+02:00") == []
    assert reasons("2024-01-06T01:00:01Z") == [(
        "future_timestamp", "ts", "timestamp '2024-01-06T01:00:01Z' is in the future: later than "
        "2024-01-06T01:00:00Z, the end of the run day 2024-01-05 plus 60 minutes (guardrails.max_future_skew_minutes)")]
    assert [r[0] for r in reasons("2024-01-06T00:00:01Z", skew=0)] == ["future_timestamp"]


ECID = Namespace(code="ecid", type="cookie", pattern="^[0-9]{38}$")
EMAIL_NS = Namespace(code="email", type="email", pattern="[a-z0-9.]+@example[.]com")
TWO_IDS = SchemaSpec.model_validate({
    "name": "hit", "class": "event", "id_field": "event_id", "timestamp_field": "ts",
    "fields": [
        {"name": "event_id", "type": "string", "required": True},
        {"name": "ts", "type": "timestamp", "required": True},
        {"name": "ecid", "type": "string", "identity": {"namespace": "ecid", "primary": True}},
        {"name": "email", "type": "string", "identity": {"namespace": "email"}},
    ],
})


def check_hits(spark: SparkSession, lines: list[str], guardrails: Guardrails | None = None) -> list[Reasons]:
    checked = transform_check(transform_jsonl(lines_df(spark, lines), TWO_IDS), TWO_IDS,
                                guardrails or Guardrails(), {"ecid": ECID, "email": EMAIL_NS})
    return [[tuple(x) for x in r[REASONS]] for r in checked.orderBy(ROW_NUMBER).collect()]


def hit(n: int, ecid: str | None, email: str | None = None) -> str:
    fields = [f'"event_id": "e{n}"', '"ts": "2024-01-05T10:00:00Z"']
    fields += [f'"ecid": "{ecid}"'] if ecid is not None else []
    fields += [f'"email": "{email}"'] if email is not None else []
    return "{" + ", ".join(fields) + "}"


def test_identity_must_match_its_namespace_pattern_after_normalisation(spark: SparkSession) -> None:
    good = "1" * 38
    assert check_hits(spark, [
        hit(1, good),
        hit(2, f"  {good} "),  # trimmed by normalisation
        hit(3, "1" * 37),
        hit(4, "1" * 36 + "ab"),
        hit(5, good, " Ann@Example.com"),  # lower-cased by normalisation
        hit(6, good, "ann@other.org"),
    ]) == [
        [], [],
        [("bad_identity_format", "ecid",
          f"identity value '{'1' * 37}' does not match the pattern of namespace ecid (^[0-9]{{38}}$)")],
        [("bad_identity_format", "ecid",
          f"identity value '{'1' * 36}ab' does not match the pattern of namespace ecid (^[0-9]{{38}}$)")],
        [],
        [("bad_identity_format", "email",
          "identity value 'ann@other.org' does not match the pattern of namespace email ([a-z0-9.]+@example[.]com)")],
    ]


def test_blocked_patterns(spark: SparkSession) -> None:
    guardrails = Guardrails(blocked_patterns=["0+", "(?i)test.*"])
    zeros = "0" * 38
    assert check_hits(spark, [hit(1, zeros), hit(2, "1" * 38, "TEST@example.com"), hit(3, "1" * 38, "null")],
                      guardrails) == [
        [("blocked_identity", "ecid", f"identity value '{zeros}' is blocked (guardrails.blocked_patterns: 0+)")],
        [("blocked_identity", "email",
          "identity value 'TEST@example.com' is blocked (guardrails.blocked_patterns: (?i)test.*)")],
        # A blocked value is reported once, by the list of values.
        [("bad_identity_format", "email",
          "identity value 'null' does not match the pattern of namespace email ([a-z0-9.]+@example[.]com)"),
         ("blocked_identity", "email", "identity value 'null' is blocked (guardrails.blocked_identity_values)")],
    ]


def test_too_many_identities(spark: SparkSession) -> None:
    good = "1" * 38
    assert check_hits(spark, [hit(1, good, "a@example.com"), hit(2, good)],
                      Guardrails(max_identities_per_record=1)) == [
        [("too_many_identities", None,
          "record has 2 identity values; at most 1 are allowed (guardrails.max_identities_per_record)")],
        [],
    ]


def test_record_too_large_counts_utf8_bytes(spark: SparkSession) -> None:
    small = hit(1, "1" * 38)
    large = small.replace('"e1"', '"\u00e9\u00e9"')  # as many characters, two more bytes
    limit = len(small.encode())
    assert (len(large), len(large.encode())) == (limit, limit + 2)
    assert check_hits(spark, [small, large], Guardrails(max_event_bytes=limit)) == [
        [],
        [("record_too_large", None,
          f"record is {limit + 2} bytes; at most {limit} are allowed (guardrails.max_event_bytes)")],
    ]
    assert check_jsonl(spark, ["{" + OK + "}"], MEMBER, Guardrails(max_profile_record_bytes=10)) == [
        [("record_too_large", None,
          f"record is {len(OK) + 2} bytes; at most 10 are allowed (guardrails.max_profile_record_bytes)")]]


def test_duplicate_event_id_against_stored_ids(spark: SparkSession) -> None:
    stored = spark.createDataFrame([("e1", dt.date(2024, 1, 3))], f"{STORED_ID} string, {STORED_BATCH_DATE} date")
    base = '"kind": "view", "ts": "2024-01-05T10:00:00Z", "ecid": "E1"'
    lines = [f'{{"event_id": "{i}", {base}}}' for i in ("e1", "e2", "e2", "e1")]
    checked = transform_check(transform_jsonl(lines_df(spark, lines), CLICK), CLICK, Guardrails(),
                                stored_ids=stored)
    stored_msg = ("duplicate_event_id", "event_id",
                  "event id 'e1' is already stored in the dataset from the batch of 2024-01-03")
    assert [[tuple(x) for x in r[REASONS]] for r in checked.orderBy(ROW_NUMBER).collect()] == [
        [stored_msg],
        [],
        [("duplicate_event_id", "event_id", "event id 'e2' already appears in /in/a.jsonl at row 2")],
        [stored_msg],
    ]
