"""The daily run end to end: the example workspace's DAG for N generated persons, then the next day.

``python -m bench --suites daily --persons 5000,1000000`` generates two days of landed files for the example
workspace (the second day: about 2% of CRM and loyalty records updated, 0.5% new persons, a day of events),
then runs ``scripts/run_day.sh`` for each day, as ``make run`` does: the jobs' Spark Connect server and the
loopback servers of the example's destinations (S3, Azure Blob, GCS, SFTP, HTTP, Kafka, Kinesis) started for the
run, ``cdp_daily`` through ``airflow dags test`` (its tasks one after the other), the servers stopped after.

Measured for each day: the DAG's wall time (first task start to last task end), and for every task its wall time,
the CPU seconds the whole process tree spent during it (the Connect server's JVM, where the Spark work runs,
included) and the tree's peak resident memory while it ran. The tree is sampled every 0.2 s; a task's CPU is the
difference of the sampled totals at its start and end.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import shutil
import subprocess
import threading
import time
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from cdp.settings import REPO_ROOT
from cdp.spark_connect import free_port

log = logging.getLogger(__name__)

END_DATE = dt.date(2026, 11, 28)


@dataclass
class TreeSamples:
    """Samples of a process tree: (time, CPU seconds so far, resident bytes)."""

    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)

    def cpu_at(self, t: float) -> float:
        i = min(bisect_left(self.times, t), len(self.times) - 1)
        return self.cpu[i] if self.times else 0.0

    def peak_between(self, start: float, end: float) -> int:
        lo, hi = bisect_left(self.times, start), bisect_left(self.times, end)
        return max(self.rss[lo:hi + 1], default=0)


def _tree_usage(root: psutil.Process) -> tuple[float, int]:
    cpu, rss = 0.0, 0
    for p in [root, *root.children(recursive=True)]:
        try:
            t = p.cpu_times()
            # children_*: processes of the tree that already ended (and were waited for) still count.
            cpu += t.user + t.system + t.children_user + t.children_system
            rss += p.memory_info().rss
        except psutil.Error:
            continue
    return cpu, rss


def run_sampled(command: list[str], env: dict[str, str], log_path: Path) -> tuple[int, TreeSamples]:
    """Run ``command`` (its output to ``log_path``), sampling its process tree; return its exit code and samples."""
    samples = TreeSamples()
    with log_path.open("w", encoding="utf-8") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        root = psutil.Process(process.pid)
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                cpu, rss = _tree_usage(root)
                samples.times.append(time.time())
                samples.cpu.append(cpu)
                samples.rss.append(rss)
                stop.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        code = process.wait()
        stop.set()
        sampler.join()
    return code, samples


def task_spans(dag_log: Path) -> list[tuple[str, float, float]]:
    """(task, start, end) in epoch seconds of every task of an ``airflow dags test`` log, in run order."""
    spans: list[tuple[str, float, float]] = []
    started: dict[str, float] = {}
    for line in dag_log.read_text(encoding="utf-8", errors="replace").splitlines():
        m = re.match(r"^(\S+)Z .*\[DAG TEST\] (starting|end task) task_id=(\S+) map_index=(-?\d+)", line)
        if not m:
            continue
        stamp = dt.datetime.fromisoformat(m.group(1)).replace(tzinfo=dt.UTC).timestamp()
        name = m.group(3) + ("" if m.group(4) == "-1" else f"[{m.group(4)}]")
        if m.group(2) == "starting":
            started[name] = stamp
        elif name in started:
            spans.append((name, started.pop(name), stamp))
    return spans


def bench_day(work: Path, persons: int, day: dt.date, env: dict[str, str]) -> list[dict[str, object]]:
    """Run one day through the DAG; one row per task and a DAG total row."""
    code, samples = run_sampled(["scripts/run_day.sh", day.isoformat()], env, work / f"run-{day}.out")
    dag_log = Path(env["AIRFLOW_HOME"]) / f"run-{day}.log"
    if code != 0:
        raise RuntimeError(f"the daily run of {day} for {persons} persons failed (exit {code}); see "
                           f"{work / f'run-{day}.out'} and {dag_log}")
    spans = task_spans(dag_log)
    rows: list[dict[str, object]] = []
    for name, start, end in spans:
        rows.append({"persons": persons, "day": str(day), "task": name, "wall_s": round(end - start, 1),
                     "cpu_s": round(samples.cpu_at(end) - samples.cpu_at(start), 1),
                     "peak_rss_mib": round(samples.peak_between(start, end) / 2**20)})
    first, last = min(s for _, s, _ in spans), max(e for _, _, e in spans)
    rows.append({"persons": persons, "day": str(day), "task": "DAG (first task start to last task end)",
                 "wall_s": round(last - first, 1), "cpu_s": round(samples.cpu_at(last) - samples.cpu_at(first), 1),
                 "peak_rss_mib": round(samples.peak_between(first, last) / 2**20)})
    log.info("daily %d persons, %s: DAG %.1f s", persons, day, last - first)
    return rows


def bench_daily(work: Path, persons: int) -> list[dict[str, object]]:
    """Two days of the example workspace for ``persons`` persons, in a lake, landing and Airflow of their own."""
    from cdp.generator import generate

    base = work / f"daily-{persons}"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    generate(base / "landing", profiles=persons, days=2, seed=42, end_date=END_DATE)
    home = base / "airflow"
    # What `make run` sets, with a lake, landing, Airflow and a Spark Connect server (on a free port) of the
    # benchmark's own, so that a server or a deployment already running here is neither used nor disturbed.
    env = {**os.environ, "AIRFLOW_HOME": str(home), "CDP_LAKE": str(base / "lake"),
           "CDP_LANDING": str(base / "landing"), "CDP_EXPORTS": str(base / "exports"),
           "CDP_SERVERS_DIR": str(base / "servers"), "CDP_SPARK_CONNECT_DIR": str(base / "spark-connect"),
           "CDP_WORKSPACE": str(REPO_ROOT / "examples" / "retail"),
           "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
           "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
           "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark_connect", "host": "sc://127.0.0.1",
                                                     "port": free_port()})}
    subprocess.run(["airflow", "db", "migrate"], env=env, check=True, capture_output=True)
    rows: list[dict[str, object]] = []
    for day in (END_DATE - dt.timedelta(days=1), END_DATE):
        rows += bench_day(base, persons, day, env)
    return rows
