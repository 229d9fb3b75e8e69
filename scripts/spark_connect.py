#!/usr/bin/env python
"""Start, stop and show the loopback Spark Connect server the jobs run against (see cdp/spark_connect.py).

Usage:
  scripts/spark_connect.py start            start it (kept when already running) and wait until it listens
  scripts/spark_connect.py stop             stop the server this repository's state folder started
  scripts/spark_connect.py status           say whether it runs, where, and its log (exit 1 when it does not)
  scripts/spark_connect.py needed           exit 0 when spark_default asks for a loopback server not running yet
  scripts/spark_connect.py run -- CMD ...   start it, run CMD, stop it whatever CMD did (CMD's exit code)

The port is CDP_SPARK_CONNECT_PORT (default 15002), the state folder CDP_SPARK_CONNECT_DIR (default
.spark-connect/), the server's master CDP_SPARK_MASTER (default local[*]) and memory CDP_SPARK_CONNECT_MEMORY
(default 4g).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from types import FrameType

from cdp.errors import CdpError
from cdp.spark_connect import default_state, loopback_port, port_open, running_pid, start_server, stop_server

log = logging.getLogger("spark_connect")


def wanted_port() -> int | None:
    """The loopback port spark_default (``AIRFLOW_CONN_SPARK_DEFAULT``) points at in connect mode, else None."""
    raw = os.environ.get("AIRFLOW_CONN_SPARK_DEFAULT", "")
    try:
        conn = json.loads(raw) if raw.strip().startswith("{") else {}
    except json.JSONDecodeError:
        return None
    if conn.get("conn_type") != "spark_connect":
        return None
    host = str(conn.get("host") or "")
    url = host if host.startswith("sc://") else f"sc://{host}"
    port = loopback_port(url if not conn.get("port") else f"{url.rstrip('/')}:{conn['port']}")
    return port


def run(command: list[str]) -> int:
    """Run ``command`` between a start and a stop of the server; the server never outlives it.

    Without a server to start (spark_default is not a loopback spark_connect connection, or its port already
    answers: a server someone else runs and stops), ``command`` just runs.
    """
    port = wanted_port()
    env = {**os.environ, "CDP_SPARK_CONNECT_OWNED": "1"}
    started = False
    if port is not None and not port_open(port):
        state = default_state(port)
        start_server(state)
        started = True
        # The CLI's own sessions (`cdp report`) use the server as well; the jobs get the URL from spark_default.
        env["CDP_SPARK_REMOTE"] = state.url
    child = subprocess.Popen(command, env=env)

    def forward(signum: int, _frame: FrameType | None) -> None:
        child.send_signal(signum)

    # Ctrl-C reaches the command from the terminal itself (same process group): wait for it to stop, then stop
    # the server. A SIGTERM sent to this process alone is passed on.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, forward)
    try:
        return child.wait()
    finally:
        if child.poll() is None:
            child.terminate()
            child.wait()
        if started:
            stop_server(default_state(port))


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not argv or argv[0] not in {"start", "stop", "status", "needed", "run"}:
        log.error("usage: scripts/spark_connect.py start|stop|status|needed|run -- CMD ...")
        return 2
    action = argv[0]
    state = default_state(wanted_port())
    try:
        if action == "start":
            start_server(state)
        elif action == "stop":
            if not stop_server(state):
                log.info("no Spark Connect server of %s is running", state.folder)
        elif action == "status":
            pid = running_pid(state)
            if pid is None:
                log.info("no Spark Connect server of %s is running", state.folder)
                return 1
            log.info("Spark Connect server running: pid %d, %s, log %s", pid, state.url, state.log_file)
        elif action == "needed":
            return 0 if wanted_port() is not None and not port_open(state.port) else 1
        else:
            command = argv[2:] if argv[1:2] == ["--"] else argv[1:]
            if not command:
                log.error("usage: scripts/spark_connect.py run -- CMD ...")
                return 2
            return run(command)
    except CdpError as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
