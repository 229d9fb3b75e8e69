"""The sample data generator: deterministic, shaped like the example workspace, bad records as announced."""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cdp.generator import BAD_KINDS, DATASETS, GenerationSummary, crm_ids, generate, loyalty_ids
from cdp.workspace.loader import Workspace, load_workspace

END = dt.date(2024, 5, 2)
DAYS = (dt.date(2024, 5, 1), END)
PROFILES = 1_200
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
ECID = re.compile(r"^[0-9]{38}$")
ARROW_TYPES = {"string": pa.string(), "long": pa.int64(), "date": pa.date32(),
               "timestamp": pa.timestamp("us", tz="UTC")}


@pytest.fixture(scope="module")
def workspace(repo_root: Path) -> Workspace:
    return load_workspace(repo_root / "examples" / "retail")


@pytest.fixture(scope="module")
def landed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GenerationSummary]:
    out = tmp_path_factory.mktemp("landed")
    return out, generate(out, profiles=PROFILES, days=2, seed=11, end_date=END)


# ---------------------------------------------------------------- reading and checking records


def parse_time(text: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None


def read_file(path: Path) -> list[Any]:
    """Records of one landed file: CSV rows (lists, header excluded), JSON lines (text), Parquet rows (dicts)."""
    if path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as handle:
            return list(csv.reader(handle))[1:]
    if path.suffix == ".jsonl":
        return path.read_text(encoding="utf-8").splitlines()
    return pq.read_table(path).to_pylist()


def bad_kind(dataset: str, record: Any, workspace: Workspace) -> str | None:
    """Why the platform would reject a record (the generator's kind name), or None for a valid record."""
    schema = workspace.schema_of(dataset)
    names = [f.name for f in schema.fields]
    if dataset == "crm_profiles":
        if len(record) != len(names):
            return "wrong_column_count"
        row = dict(zip(names, record, strict=True))
        if not row["crm_id"]:
            return "missing_crm_id"
        if row["email"] and not EMAIL.match(row["email"].strip()):
            return "malformed_email"
        return None if parse_time(row["updated_at"]) else "bad_updated_at"
    if dataset == "loyalty_members":
        if record["loyalty_id"] is None:
            return "missing_loyalty_id"
        return None if record["tier"] in schema.field("tier").enum else "unknown_tier"
    try:
        event = json.loads(record)
    except json.JSONDecodeError:
        return "broken_json"
    if "event_id" not in event:
        return "missing_event_id"
    if event["event_type"] not in schema.field("event_type").enum:
        return "unknown_event_type"
    if parse_time(event["timestamp"]) is None:
        return "bad_timestamp"
    identity = "ecid" if dataset == "web_events" else "email"
    if event[identity] in workspace.config.guardrails.blocked_identity_values:
        return "blocked_identity"
    if dataset == "web_events":
        return None if ECID.match(event["ecid"]) else "malformed_ecid"
    return None if EMAIL.match(event["email"]) else "malformed_email"


def files_of(out: Path, workspace: Workspace, dataset: str, day: dt.date) -> list[Path]:
    folder = out / workspace.datasets[dataset].source.path.format(date=day.isoformat())
    return sorted(folder.iterdir())


def good_records(out: Path, workspace: Workspace, dataset: str, day: dt.date) -> list[Any]:
    """The valid records of a day in file order, the repeats of an event id left out."""
    seen: set[str] = set()
    out_records = []
    for path in files_of(out, workspace, dataset, day):
        for record in read_file(path):
            if bad_kind(dataset, record, workspace) is not None:
                continue
            if path.suffix == ".jsonl":
                event_id = json.loads(record)["event_id"]
                if event_id in seen:
                    continue
                seen.add(event_id)
            out_records.append(record)
    return out_records


# ---------------------------------------------------------------- tests


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path, landed: tuple[Path, GenerationSummary]) -> None:
    out, summary = landed
    again = generate(tmp_path / "again", profiles=PROFILES, days=2, seed=11, end_date=END)
    other = generate(tmp_path / "other", profiles=PROFILES, days=2, seed=12, end_date=END)
    relative = [p.relative_to(out) for p in summary.files]
    assert [p.relative_to(tmp_path / "again") for p in again.files] == relative
    assert [p.relative_to(tmp_path / "other") for p in other.files] == relative
    for rel in relative:
        assert (tmp_path / "again" / rel).read_bytes() == (out / rel).read_bytes(), rel
        assert (tmp_path / "other" / rel).read_bytes() != (out / rel).read_bytes(), rel


def test_layout_and_fields_follow_the_workspace(landed: tuple[Path, GenerationSummary], workspace: Workspace) -> None:
    out, summary = landed
    assert sorted(DATASETS) == sorted(workspace.datasets)
    expected = sorted(out / workspace.datasets[d].source.path.format(date=day.isoformat())
                      / f"{d}_00000.{workspace.datasets[d].format}" for d in DATASETS for day in DAYS)
    assert sorted(summary.files) == expected
    assert sorted(p for p in out.rglob("*") if p.is_file()) == expected
    for dataset in DATASETS:
        fields = workspace.schema_of(dataset).fields
        names = [f.name for f in fields]
        for day in DAYS:
            (path,) = files_of(out, workspace, dataset, day)
            if path.suffix == ".csv":
                assert path.read_text(encoding="utf-8").splitlines()[0] == ",".join(names)
            elif path.suffix == ".parquet":
                schema = pq.read_schema(path)
                assert schema.names == names
                assert [schema.field(f.name).type for f in fields] == [ARROW_TYPES[f.type] for f in fields]
            else:
                assert all(list(json.loads(line)) == names for line in good_records(out, workspace, dataset, day))


def test_values_are_typed_and_dated(landed: tuple[Path, GenerationSummary], workspace: Workspace) -> None:
    out, _ = landed
    for day in DAYS:
        start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        for dataset in ("web_events", "email_events"):
            events = [json.loads(line) for line in good_records(out, workspace, dataset, day)]
            assert events
            assert all(e["timestamp"].endswith("Z") for e in events)
            assert all(start <= parse_time(e["timestamp"]) < start + dt.timedelta(days=1) for e in events)
        for row in good_records(out, workspace, "crm_profiles", day):
            record = dict(zip([f.name for f in workspace.schema_of("crm_profiles").fields], row, strict=True))
            assert record["updated_at"].endswith("Z")
            assert parse_time(record["updated_at"]) < start + dt.timedelta(days=1)
            assert record["consent_marketing"] in ("true", "false")
            assert not record["birth_date"] or dt.date.fromisoformat(record["birth_date"]) < day
            if day == END:  # the later day carries updates and new persons, stamped that day
                assert parse_time(record["updated_at"]) >= start
    web = [json.loads(line) for line in good_records(out, workspace, "web_events", DAYS[0])]
    purchases = [e for e in web if e["event_type"] == "purchase"]
    assert purchases and all(isinstance(e["revenue"], float) and e["product_id"] for e in purchases)
    assert all(e["page_url"].startswith("https://shop.example/") for e in web)
    assert all(e["revenue"] is None for e in web if e["event_type"] != "purchase")


def test_counts_match_the_summary(landed: tuple[Path, GenerationSummary], workspace: Workspace) -> None:
    out, summary = landed
    for dataset in DATASETS:
        counts = summary.counts(dataset)
        records = [r for day in DAYS for path in files_of(out, workspace, dataset, day) for r in read_file(path)]
        assert counts.records == len(records)
        assert counts.files == len(DAYS)
        kinds = Counter(bad_kind(dataset, r, workspace) for r in records)
        kinds.pop(None, None)
        assert dict(counts.bad_by_kind) == {k: kinds.get(k, 0) for k in BAD_KINDS[dataset]}
        assert counts.bad == sum(kinds.values())
    first_day = [files_of(out, workspace, "crm_profiles", DAYS[0])[0]]
    assert 0.6 * PROFILES < len(read_file(first_day[0])) < 0.8 * PROFILES  # ~70% of persons have a CRM record
    assert summary.persons == PROFILES + round(PROFILES * 0.005)


def test_bad_records_of_every_kind_under_three_percent(landed: tuple[Path, GenerationSummary],
                                                       workspace: Workspace) -> None:
    out, _ = landed
    for dataset in DATASETS:
        for day in DAYS:
            (path,) = files_of(out, workspace, dataset, day)
            records = read_file(path)
            kinds = Counter(bad_kind(dataset, r, workspace) for r in records)
            bad = len(records) - kinds[None]
            assert bad <= 0.03 * len(records), (path, kinds)
            if kinds[None] >= 200:
                assert set(kinds) - {None} == set(BAD_KINDS[dataset]), (path, kinds)
                assert bad >= 0.005 * len(records)
            if dataset == "web_events":
                ids = Counter(json.loads(line).get("event_id") for line in records
                              if bad_kind(dataset, line, workspace) is None)
                assert sorted(n for n in ids.values() if n > 1) == [2]  # one duplicated event id per file


def test_ecids_and_logged_in_hits(landed: tuple[Path, GenerationSummary], workspace: Workspace) -> None:
    out, summary = landed
    lines = [r for day in DAYS for path in files_of(out, workspace, "web_events", day) for r in read_file(path)]
    not_38 = 0
    for line in lines:
        try:
            ecid = json.loads(line)["ecid"]
        except json.JSONDecodeError:
            continue
        not_38 += not ECID.match(ecid)
    counts = dict(summary.counts("web_events").bad_by_kind)
    assert not_38 == counts["blocked_identity"] + counts["malformed_ecid"]
    events = [json.loads(line) for day in DAYS for line in good_records(out, workspace, "web_events", day)]
    cookies: dict[str, set[str]] = defaultdict(set)
    for event in events:
        if event["crm_id"] is not None:
            cookies[event["crm_id"]].add(event["ecid"])
    assert 0.2 < sum(1 for e in events if e["crm_id"]) / len(events) < 0.4  # ~30% of hits are logged in
    assert max(len(c) for c in cookies.values()) <= 3
    assert any(len(c) > 1 for c in cookies.values())  # a person browses with several cookies


def test_crm_and_loyalty_emails_of_a_person_normalise_alike(landed: tuple[Path, GenerationSummary],
                                                            workspace: Workspace) -> None:
    out, summary = landed
    person_of_crm = {c: p for p, c in enumerate(crm_ids(np.arange(summary.persons)))}
    person_of_loyalty = {c: p for p, c in enumerate(loyalty_ids(np.arange(summary.persons)))}
    crm_email = {person_of_crm[row[0]]: row[1] for row in good_records(out, workspace, "crm_profiles", DAYS[0])
                 if row[1]}
    loyalty_email = {person_of_loyalty[r["loyalty_id"]]: r["email"]
                     for r in good_records(out, workspace, "loyalty_members", DAYS[0]) if r["email"]}

    def norm(email: str) -> str:
        return email.strip().lower()

    assert len({norm(e) for e in crm_email.values()}) == len(crm_email)  # no two persons share an email
    both = sorted(crm_email.keys() & loyalty_email.keys())
    shared = [p for p in both if norm(crm_email[p]) == norm(loyalty_email[p])]
    written_differently = [p for p in shared if crm_email[p] != loyalty_email[p]]
    assert len(both) > 150
    assert 0.7 < len(shared) / len(both) < 0.9
    assert len(written_differently) > 0.4 * len(shared)  # only normalisation links them
    # Loyalty emails of other persons never normalise to a CRM email of someone else.
    owner = {norm(e): p for p, e in crm_email.items()}
    assert all(owner.get(norm(e), p) == p for p, e in loyalty_email.items())


def test_chunked_run_writes_the_same_records(tmp_path: Path, workspace: Workspace) -> None:
    args: dict[str, Any] = {"profiles": 600, "days": 2, "seed": 5, "end_date": END}
    whole = generate(tmp_path / "whole", bad_share=0.0, **args)
    parts = generate(tmp_path / "parts", bad_share=0.0, chunk_size=128, **args)
    assert whole.counts("web_events").files == 2 and parts.counts("web_events").files == 10
    assert whole.records == parts.records and sum(whole.bad_records.values()) == 0
    for dataset in DATASETS:
        for day in DAYS:
            one, many = (files_of(tmp_path / run, workspace, dataset, day) for run in ("whole", "parts"))
            if dataset == "loyalty_members":
                assert pa.concat_tables(pq.read_table(p) for p in many).equals(pq.read_table(one[0]))
            else:
                assert [r for p in many for r in read_file(p)] == read_file(one[0])
    # With bad records, which records are corrupted depends on the files, but the good ones do not.
    generate(tmp_path / "whole_bad", **args)
    generate(tmp_path / "parts_bad", chunk_size=128, **args)
    for dataset in DATASETS:
        for day in DAYS:
            assert (good_records(tmp_path / "whole_bad", workspace, dataset, day)
                    == good_records(tmp_path / "parts_bad", workspace, dataset, day)
                    == good_records(tmp_path / "whole", workspace, dataset, day))


def test_stale_parts_of_an_earlier_run_are_removed(tmp_path: Path) -> None:
    generate(tmp_path, profiles=300, days=1, seed=1, end_date=END, chunk_size=100)
    summary = generate(tmp_path, profiles=300, days=1, seed=1, end_date=END)
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == sorted(summary.files)


@pytest.mark.parametrize("kwargs", [{"profiles": 0}, {"days": 0}, {"seed": -1}, {"bad_share": 0.05},
                                    {"chunk_size": 0}])
def test_invalid_arguments(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"profiles": 10, "days": 1, "seed": 1, "end_date": END, **kwargs}
    with pytest.raises(ValueError):
        generate(tmp_path, **args)
