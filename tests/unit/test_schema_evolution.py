"""Schema evolution rules, and the stored schema read from a Delta log without Spark."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import types as T

from cdp.cli import main
from cdp.lake import DATASET, Lake
from cdp.schema_evolution import compare_with_table, declared_table_struct, read_delta_schema
from cdp.workspace.loader import load_workspace

STORED = T.StructType([
    T.StructField("id", T.StringType(), True),
    T.StructField("n", T.LongType(), True),
    T.StructField("prefs", T.StructType([T.StructField("news", T.BooleanType(), True)]), True),
])


def struct(*fields: T.StructField) -> T.StructType:
    return T.StructType(list(fields))


def test_identical_and_additive_changes_are_compatible() -> None:
    assert compare_with_table(STORED, STORED) == []
    added = struct(*STORED.fields, T.StructField("channel", T.StringType(), True),
                   T.StructField("tags", T.ArrayType(T.StringType()), True))
    assert compare_with_table(added, STORED) == []
    # A new optional field inside an object, and a field now required that the table already has.
    nested = struct(T.StructField("id", T.StringType(), False), STORED.fields[1], T.StructField(
        "prefs", T.StructType([T.StructField("news", T.BooleanType(), True),
                               T.StructField("sms", T.BooleanType(), True)]), True))
    assert compare_with_table(nested, STORED) == []


def test_breaking_changes_are_each_explained() -> None:
    declared = struct(
        T.StructField("id", T.StringType(), True),
        T.StructField("n", T.StringType(), True),
        T.StructField("prefs", T.StructType([T.StructField("news", T.StringType(), True)]), True),
        T.StructField("region", T.StringType(), False),
    )
    wider = struct(T.StructField("id", T.StringType(), True), T.StructField("n", T.DecimalType(20, 0), True),
                   STORED.fields[2])
    assert compare_with_table(declared, STORED) == [
        "field 'n' is bigint in the stored table but declared string: changing a type is a breaking change",
        "field 'prefs.news' is boolean in the stored table but declared string: changing a type is a breaking change",
        "new field 'region' is required, but the rows already stored have no value for it: declare it optional "
        "(required: false)",
    ]
    assert compare_with_table(struct(STORED.fields[0]), STORED) == [
        "field 'n' (bigint) is in the stored table but no longer declared: removing a field is a breaking change",
        "field 'prefs' (struct<news:boolean>) is in the stored table but no longer declared: removing a field is a "
        "breaking change",
    ]
    assert compare_with_table(wider, STORED) == [
        "field 'n' is bigint in the stored table but declared decimal(20,0): changing a type is a breaking change"]


def write_log(table: Path, commits: list[list[dict[str, object]]]) -> None:
    log = table / "_delta_log"
    log.mkdir(parents=True)
    for version, actions in enumerate(commits):
        (log / f"{version:020d}.json").write_text("\n".join(json.dumps(a) for a in actions) + "\n")


def metadata(schema: T.StructType) -> dict[str, object]:
    return {"metaData": {"id": "x", "format": {"provider": "parquet", "options": {}},
                         "schemaString": schema.json(), "partitionColumns": [], "configuration": {}}}


ADD = {"add": {"path": "part-0.parquet", "size": 1, "modificationTime": 0, "dataChange": True}}


def test_read_delta_schema_takes_the_newest_metadata(tmp_path: Path) -> None:
    assert read_delta_schema(str(tmp_path / "none")) is None
    newer = struct(*STORED.fields, T.StructField("channel", T.StringType(), True))
    write_log(tmp_path / "t", [[{"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}}, metadata(STORED)],
                               [ADD], [metadata(newer), ADD], [ADD]])
    assert read_delta_schema(str(tmp_path / "t")) == newer
    assert read_delta_schema(f"file://{tmp_path / 't'}") == newer


def test_read_delta_schema_from_a_checkpoint(tmp_path: Path) -> None:
    # Versions 0-1 are folded into the checkpoint (and their JSON cleaned up); version 2 is after it.
    table = tmp_path / "t"
    write_log(table, [[metadata(T.StructType([]))], [ADD], [ADD]])
    log = table / "_delta_log"
    for version in (0, 1):
        (log / f"{version:020d}.json").unlink()
    meta_type = pa.struct([("id", pa.string()), ("schemaString", pa.string())])
    checkpoint = pa.table({
        "metaData": pa.array([None, {"id": "x", "schemaString": STORED.json()}], meta_type),
        "add": pa.array([{"path": "part-0.parquet"}, None], pa.struct([("path", pa.string())])),
    })
    pq.write_table(checkpoint, log / f"{1:020d}.checkpoint.parquet")
    (log / "_last_checkpoint").write_text(json.dumps({"version": 1, "size": 2}))
    assert read_delta_schema(str(table)) == STORED


@pytest.fixture()
def workspace(tmp_path: Path, repo_root: Path) -> Path:
    dest = tmp_path / "ws"
    shutil.copytree(repo_root / "examples" / "retail", dest)
    return dest


def test_cli_validate_refuses_breaking_changes_against_the_lake(workspace: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    lake = tmp_path / "lake"
    stored = declared_table_struct(load_workspace(workspace).schema_of("web_events"))
    write_log(Path(Lake(str(lake)).path(DATASET, "web_events")), [[metadata(stored)]])
    assert main(["validate", str(workspace), "--lake", str(lake)]) == 0
    capsys.readouterr()

    path = workspace / "schemas" / "web_event.yaml"
    text = path.read_text()
    text = text.replace("{name: revenue, type: double}", "{name: revenue, type: string}")
    text = text.replace("  - {name: product_id, type: string}\n", "")
    path.write_text(text + "  - {name: channel, type: string, required: true}\n")
    assert main(["validate", str(workspace), "--lake", str(lake)]) == 1
    table = Lake(str(lake)).path(DATASET, "web_events")
    where = f"(dataset web_events, table {table})"
    assert capsys.readouterr().out.splitlines() == [
        f"{workspace}/schemas/web_event.yaml: fields.product_id: field 'product_id' (string) is in the stored table "
        f"but no longer declared: removing a field is a breaking change {where}",
        f"{workspace}/schemas/web_event.yaml: fields.revenue: field 'revenue' is double in the stored table but "
        f"declared string: changing a type is a breaking change {where}",
        f"{workspace}/schemas/web_event.yaml: fields.channel: new field 'channel' is required, but the rows already "
        f"stored have no value for it: declare it optional (required: false) {where}",
        "3 problem(s) found",
    ]
