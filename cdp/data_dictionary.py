"""Render docs/data_dictionary.md from the table declarations in :mod:`cdp.lake`."""

from __future__ import annotations

from pyspark.sql import types as T

from cdp.lake import ALL_TABLES, TableSpec

HEADER = """# Data dictionary

Every Delta table the platform writes, under the lake root (`CDP_LAKE`, default `data/lake`).
Generated from `cdp/lake.py` by `cdp docs`; a test fails when this file and the code disagree.

Dates are UTC. `run_date` / `batch_date` / `_batch_date` is the run's date (the DAG run's data
interval start): every write replaces exactly the slice of its run date, so re-runs and
backfills are idempotent.
"""


def _type(data_type: T.DataType) -> str:
    return data_type.simpleString()


def render_table(table: TableSpec) -> str:
    lines = [f"## `{table.name}`", "", table.description, "",
             f"- location: `<lake>/{table.path.replace('{dataset}', '<dataset>')}`",
             f"- written by: `{table.written_by}`, {table.write_mode}"
             + ("; each write one delta-rs commit from the job's own process (`cdp.small_tables`), never a Spark job"
                if table.small else ""),
             f"- key: {', '.join(f'`{k}`' for k in table.keys)}"]
    if table.partition_by:
        lines.append(f"- partitioned by: {', '.join(f'`{p}`' for p in table.partition_by)}")
    lines.append("")
    if table.schema is not None:
        lines += ["| column | type | nullable |", "|---|---|---|"]
        lines += [f"| `{f.name}` | `{_type(f.dataType)}` | {'yes' if f.nullable else 'no'} |"
                  for f in table.schema.fields]
    else:
        lines.append(f"Columns: {table.columns}.")
    return "\n".join(lines) + "\n"


def render_data_dictionary() -> str:
    return HEADER + "\n" + "\n".join(render_table(t) for t in ALL_TABLES)
