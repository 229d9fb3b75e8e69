"""Whether a Delta table is at a path, read from its _delta_log (no Spark job): a commit or a checkpoint makes a
table; an absent folder, an empty log or a commit still being written (a temporary file) do not."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdp.delta_io import table_exists


@pytest.mark.parametrize(("names", "exists"), [
    ([], False),
    ([".00000000000000000000.json.3f2a.tmp"], False),
    (["_commits", "_last_checkpoint"], False),
    (["00000000000000000000.json"], True),
    (["00000000000000000010.checkpoint.parquet", "_last_checkpoint"], True),
    (["00000000000000000010.checkpoint.0000000001.0000000002.parquet"], True),
    (["00000000000000000010.checkpoint.80a083e8-7026-4e79-81be-64bd76c43a11.json"], True),
])
def test_a_table_is_a_log_with_a_commit_or_a_checkpoint(tmp_path: Path, names: list[str], exists: bool) -> None:
    log = tmp_path / "t" / "_delta_log"
    log.mkdir(parents=True)
    for name in names:
        (log / name).mkdir() if name == "_commits" else (log / name).write_text("")
    assert table_exists(None, str(tmp_path / "t")) is exists  # type: ignore[arg-type]


def test_no_folder_is_no_table(tmp_path: Path) -> None:
    assert table_exists(None, str(tmp_path / "absent")) is False  # type: ignore[arg-type]
    assert table_exists(None, f"file://{tmp_path}/absent") is False  # type: ignore[arg-type]
