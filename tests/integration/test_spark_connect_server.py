"""The jobs' Spark Connect server: `scripts/spark_connect.py run` never leaves it running, loopback only."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cdp.errors import SparkConnectServerError
from cdp.spark_connect import ServerState, free_port, port_open, start_server

# The command run under the server: the port answers on loopback and not on the machine's other address,
# and the CLI's remote URL is set; it exits 7 (passed on by `run`).
PROBE = """
import os, socket, sys
port = int(sys.argv[1])
socket.create_connection(("127.0.0.1", port), timeout=10).close()
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
    udp.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the address of the default route
    address = udp.getsockname()[0]
try:
    socket.create_connection((address, port), timeout=10).close()
    outside = "open"
except OSError:
    outside = "refused"
print(os.environ["CDP_SPARK_REMOTE"], address != "127.0.0.1", outside)
sys.exit(7)
"""


def test_run_starts_the_server_for_the_command_and_stops_it_after(tmp_path: Path, repo_root: Path) -> None:
    port = free_port()
    env = {**os.environ, "CDP_SPARK_CONNECT_DIR": str(tmp_path / "state"), "CDP_SPARK_MASTER": "local[1]",
           "CDP_SPARK_CONNECT_MEMORY": "1g",
           "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark_connect", "host": "sc://127.0.0.1",
                                                     "port": port})}
    script = str(repo_root / "scripts" / "spark_connect.py")
    assert subprocess.run([sys.executable, script, "needed"], env=env, check=False).returncode == 0
    result = subprocess.run([sys.executable, script, "run", "--", sys.executable, "-c", PROBE, str(port)],
                            env=env, capture_output=True, text=True, check=False, timeout=600)
    assert result.returncode == 7, result.stderr[-3000:]  # the command's exit code
    assert result.stdout.strip() == f"sc://127.0.0.1:{port} True refused"
    assert not port_open(port)
    assert not (tmp_path / "state" / "server.json").exists()
    status = subprocess.run([sys.executable, script, "status"], env=env, capture_output=True, text=True, check=False)
    assert status.returncode == 1
    assert status.stderr.strip() == f"no Spark Connect server of {tmp_path / 'state'} is running"


def test_not_needed_for_a_spark_submit_connection(repo_root: Path) -> None:
    env = {**os.environ, "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark", "host": "local[*]"})}
    script = str(repo_root / "scripts" / "spark_connect.py")
    assert subprocess.run([sys.executable, script, "needed"], env=env, check=False).returncode == 1


def test_start_refuses_a_port_another_process_holds(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(SparkConnectServerError) as refused:
            start_server(ServerState(tmp_path, port))
    assert str(refused.value) == (
        f"port {port} of 127.0.0.1 is taken by another process: stop it, or set CDP_SPARK_CONNECT_PORT (and the "
        "spark_default connection's port) to a free port")
    assert not (tmp_path / "server.json").exists()
