"""A real Spark standalone cluster on 127.0.0.1: one master and one worker from the installed pyspark.

``spark-class org.apache.spark.deploy.master.Master`` and ``...worker.Worker``, each in a process group of its
own, on free loopback ports, stopped (group and all: the worker's executors are its children) after the test
session. The worker's environment is what its executors inherit, so the S3 credentials of an ``s3a://`` lake
are given to the worker's environment, never to a Spark setting (those show in the UI and on command lines).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from servers.processes import free_port, stop_process_group, wait_for_port

SPARK_CLASS = Path(sys.executable).parent / "spark-class"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"


class SparkStandaloneCluster:
    """A master and one worker (``cores`` cores, ``memory`` for executors) on loopback."""

    def __init__(self, cores: int = 2, memory: str = "2g", env: dict[str, str] | None = None) -> None:
        self.cores = cores
        self.memory = memory
        self.env = dict(env or {})
        self.folder = Path(tempfile.mkdtemp(prefix="cdp-spark-cluster-"))
        self.port = free_port()
        self.master_ui = free_port()
        self.worker_port = free_port()
        self.worker_ui = free_port()
        self._processes: list[subprocess.Popen[bytes]] = []

    @property
    def master_url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        env = {**os.environ, **self.env,
               # Loopback only, and logs / pid files in the scratch folder, not the installed Spark's.
               "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOG_DIR": str(self.folder / "logs"),
               "SPARK_PID_DIR": str(self.folder), "SPARK_WORKER_DIR": str(self.folder / "work"),
               "SPARK_NO_DAEMONIZE": "1"}
        # A client's settings never reach the cluster's processes.
        for key in ("CDP_SPARK_REMOTE", "SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED"):
            env.pop(key, None)
        with open(self.folder / f"{name}.log", "ab") as log_file:
            process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True, cwd=self.folder, env=env)
        self._processes.append(process)
        return process

    def start(self) -> SparkStandaloneCluster:
        """Start the master, then the worker, and wait until the master lists the worker as ALIVE."""
        try:
            master = self._spawn("master", [str(SPARK_CLASS), MASTER_CLASS, "--host", "127.0.0.1", "--port",
                                            str(self.port), "--webui-port", str(self.master_ui)])
            # The JVM start takes 5-30 s on a loaded 2-core machine.
            wait_for_port(self.port, master, "spark master", timeout=180)
            worker = self._spawn("worker", [str(SPARK_CLASS), WORKER_CLASS, self.master_url, "--host", "127.0.0.1",
                                            "--port", str(self.worker_port), "--webui-port", str(self.worker_ui),
                                            "--cores", str(self.cores), "--memory", self.memory,
                                            "--work-dir", str(self.folder / "work")])
            self._wait_worker_alive(worker)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_worker_alive(self, worker: subprocess.Popen[bytes], timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if worker.poll() is not None:
                raise RuntimeError(f"spark worker exited with code {worker.returncode}; see {self.folder}/worker.log")
            if any(w.get("state") == "ALIVE" for w in self.status().get("workers", [])):
                return
            time.sleep(0.5)
        raise RuntimeError(f"no ALIVE worker registered with {self.master_url} within {timeout:.0f}s")

    def status(self) -> dict[str, Any]:
        """The master's JSON status (workers, running and completed applications)."""
        with contextlib.suppress(OSError, ValueError), \
                urllib.request.urlopen(f"http://127.0.0.1:{self.master_ui}/json/", timeout=5) as answer:
            return dict(json.loads(answer.read()))
        return {}

    def stop(self) -> None:
        """Stop the worker (and its executors), then the master; remove the scratch folder."""
        for process in reversed(self._processes):
            stop_process_group(process.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        self._processes.clear()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> SparkStandaloneCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
