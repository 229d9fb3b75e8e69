"""The long-lived Spark Connect server the jobs run against in the embedded default.

Every task of ``cdp_daily`` used to be a ``spark-submit``: a JVM start, class loading and a cold Delta log
cache, 45-180 s per task on a loaded 2-core machine. One server (Spark 4 ships it:
``org.apache.spark.sql.connect.service.SparkConnectServer`` in pyspark's ``spark-connect`` jar) pays that
once; each task is then a Python client (``sc://127.0.0.1:<port>``) that costs a Python start plus its own work.

The server listens on 127.0.0.1 only, runs with the Delta extensions and the jars of ``.jars/``, the lake's
settings (:func:`cdp.spark_conf.submit_conf`) and a checkpoint directory, and keeps its pid file, log and
checkpoints in one state folder (``CDP_SPARK_CONNECT_DIR``, default ``<repo>/.spark-connect``).
``scripts/spark_connect.py start|stop|status|run`` drives it from the shell; tests call :func:`start_server`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from cdp.errors import SparkConnectServerError
from cdp.settings import REPO_ROOT
from cdp.spark_conf import delta_jars, s3a_conf, s3a_needs, submit_conf
from cdp.storage.connections import lake_store_env

log = logging.getLogger(__name__)

SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
DEFAULT_PORT = 15002
LOOPBACK = "127.0.0.1"
# The JVM start, class loading and the gRPC bind take 10-60 s on a loaded 2-core machine.
START_TIMEOUT_S = float(os.environ.get("CDP_SPARK_CONNECT_START_TIMEOUT", "300"))
STOP_TIMEOUT_S = 60.0
FAIR_POOLS = """<?xml version="1.0"?>
<allocations>
  <pool name="default"><schedulingMode>FAIR</schedulingMode><weight>1</weight><minShare>0</minShare></pool>
</allocations>
"""


@dataclass(frozen=True)
class ServerState:
    """Where one server keeps its pid file, log and checkpoints, and the port it listens on."""

    folder: Path
    port: int = DEFAULT_PORT

    @property
    def pid_file(self) -> Path:
        return self.folder / "server.json"

    @property
    def log_file(self) -> Path:
        return self.folder / "server.log"

    @property
    def checkpoints(self) -> Path:
        return self.folder / "checkpoints"

    @property
    def url(self) -> str:
        return f"sc://{LOOPBACK}:{self.port}"


def default_state(port: int | None = None) -> ServerState:
    """The state folder and port from ``CDP_SPARK_CONNECT_DIR`` / ``CDP_SPARK_CONNECT_PORT`` (or the defaults)."""
    folder = Path(os.environ.get("CDP_SPARK_CONNECT_DIR", str(REPO_ROOT / ".spark-connect")))
    return ServerState(folder, port or int(os.environ.get("CDP_SPARK_CONNECT_PORT", str(DEFAULT_PORT))))


def port_open(port: int, host: str = LOOPBACK) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on (for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_pid(state: ServerState) -> int | None:
    """The pid of the server this state folder started, when it still runs (a stale pid file is removed)."""
    if not state.pid_file.exists():
        return None
    try:
        pid = int(json.loads(state.pid_file.read_text(encoding="utf-8"))["pid"])
    except (ValueError, KeyError, json.JSONDecodeError):
        state.pid_file.unlink(missing_ok=True)
        return None
    if _alive(pid):
        return pid
    state.pid_file.unlink(missing_ok=True)
    return None


def checkpoint_dir(state: ServerState, env: dict[str, str] | None = None) -> str:
    """Where the server's executors write checkpoints: ``CDP_SPARK_CHECKPOINT_DIR`` when set; with the lake on
    an object store (``CDP_LAKE=s3a://...``) under the lake (``<lake>/_checkpoints/spark-connect``), since the
    executors of a cluster share no disk with the server; else the state folder (local mode, as before)."""
    env = dict(os.environ) if env is None else env
    if env.get("CDP_SPARK_CHECKPOINT_DIR"):
        return env["CDP_SPARK_CHECKPOINT_DIR"]
    lake = env.get("CDP_LAKE", "")
    if "://" in lake and not lake.startswith("file://"):
        return f"{lake.rstrip('/')}/_checkpoints/spark-connect"
    return str(state.checkpoints)


def server_command(state: ServerState, master: str, driver_memory: str,
                   store_env: dict[str, str] | None = None, s3a: list[str] | None = None) -> list[str]:
    """The ``spark-submit`` command line that runs the Connect server (no secret is ever on it).

    ``store_env``: the lake store's variables from its Airflow connection (:func:`lake_store_env`), whose
    endpoint and region become S3A settings; its credentials go to the server's environment only.
    ``s3a``: what the server's sessions read or write on S3 (default :func:`s3a_needs` of the environment: an
    ``s3a://`` lake, datasets of ``CDP_WORKSPACE`` landing on S3); without anything, no S3A jar nor setting.
    """
    s3a = s3a_needs() if s3a is None else s3a
    conf = {
        **submit_conf(s3a),
        **s3a_conf(s3a, {**os.environ, **(store_env or {})}),
        # Loopback only: the server runs any code a client sends, so it must never face the network.
        "spark.connect.grpc.binding.address": LOOPBACK,
        "spark.connect.grpc.binding.port": str(state.port),
        "spark.driver.host": LOOPBACK,
        "spark.driver.bindAddress": LOOPBACK,
        "spark.ui.enabled": "false",
        # DataFrame.checkpoint() (connected components) needs a reliable checkpoint folder on the server.
        "spark.checkpoint.dir": checkpoint_dir(state),
        # Parallel tasks (mapped validate / ingest / export) share the cores instead of queueing whole jobs:
        # FAIR between pools, and FAIR inside the default pool every session's jobs go to.
        "spark.scheduler.mode": "FAIR",
        "spark.scheduler.allocation.file": str(state.folder / "fairscheduler.xml"),
    }
    spark_submit = str(Path(sys.executable).parent / "spark-submit")
    command = [spark_submit, "--class", SERVER_CLASS, "--name", "cdp-spark-connect", "--master", master,
               "--driver-memory", driver_memory, "--jars", ",".join(delta_jars(s3a))]
    for key, value in conf.items():
        command += ["--conf", f"{key}={value}"]
    return [*command, "spark-internal"]


def start_server(state: ServerState | None = None, master: str | None = None,
                 driver_memory: str | None = None, timeout_s: float = START_TIMEOUT_S) -> ServerState:
    """Start the server in the background and wait until it accepts clients; a running one is kept.

    Raises :class:`SparkConnectServerError` when the port is taken by another process or the server does
    not come up (the message names its log file).
    """
    state = state or default_state()
    if running_pid(state) is not None:
        log.info("Spark Connect server already running on %s (state %s)", state.url, state.folder)
        return state
    if port_open(state.port):
        raise SparkConnectServerError(
            f"port {state.port} of {LOOPBACK} is taken by another process: stop it, or set CDP_SPARK_CONNECT_PORT "
            "(and the spark_default connection's port) to a free port")
    state.folder.mkdir(parents=True, exist_ok=True)
    state.checkpoints.mkdir(exist_ok=True)
    (state.folder / "fairscheduler.xml").write_text(FAIR_POOLS, encoding="utf-8")
    master = master or os.environ.get("CDP_SPARK_MASTER", "local[*]")
    memory = driver_memory or os.environ.get("CDP_SPARK_CONNECT_MEMORY", "4g")
    store_env = lake_store_env()
    # Read once, when the JVM starts: a workspace that starts landing on S3 later needs a restart of the server
    # (validate says so when it meets an S3 object and the session has no S3A connector).
    s3a = s3a_needs()
    if s3a:
        log.info("the Spark Connect server loads the S3A connector for %s", "; ".join(s3a))
    env = {**os.environ, **store_env, "PYSPARK_PYTHON": submit_conf([])["spark.pyspark.python"]}
    # A client's settings never reach the server's environment: drop the remote URL a caller may have set.
    env.pop("CDP_SPARK_REMOTE", None)
    env.pop("SPARK_REMOTE", None)
    with state.log_file.open("ab") as out:
        process = subprocess.Popen(server_command(state, master, memory, store_env, s3a), stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=state.folder,
                                   start_new_session=True)
    state.pid_file.write_text(json.dumps({"pid": process.pid, "port": state.port}), encoding="utf-8")
    try:
        _wait_listening(state, process, timeout_s)
    except BaseException:
        # Not up in time, or the caller was interrupted (Ctrl-C) while waiting: never leave it running.
        stop_server(state)
        raise
    log.info("Spark Connect server listening on %s (pid %d, log %s)", state.url, process.pid, state.log_file)
    return state


def _wait_listening(state: ServerState, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not port_open(state.port):
        if process.poll() is not None:
            raise SparkConnectServerError(
                f"the Spark Connect server exited with code {process.returncode} before listening on {state.url}; "
                f"see {state.log_file}")
        if time.monotonic() > deadline:
            raise SparkConnectServerError(
                f"the Spark Connect server did not listen on {state.url} within {timeout_s:.0f} s; see "
                f"{state.log_file} (raise CDP_SPARK_CONNECT_START_TIMEOUT on a slow machine)")
        time.sleep(0.5)


def stop_server(state: ServerState | None = None) -> bool:
    """Stop the server this state folder started (SIGTERM, then SIGKILL); False when none was running."""
    state = state or default_state()
    pid = running_pid(state)
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        # The server was started in its own session: its group holds the JVM and its Python workers.
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while _alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    state.pid_file.unlink(missing_ok=True)
    log.info("Spark Connect server on %s stopped", state.url)
    return True


def loopback_port(url: str) -> int | None:
    """The port of an ``sc://`` URL that points at this machine's loopback, else None (a remote server)."""
    parsed = urlparse(url.split(";", 1)[0].replace("sc://", "http://", 1))
    if parsed.hostname not in {LOOPBACK, "localhost"}:
        return None
    return parsed.port or DEFAULT_PORT
