#!/usr/bin/env python
"""Start, describe and stop the loopback servers of the file destinations for the demo (the tests' servers).

    .venv/bin/python scripts/local_servers.py start [s3 azure_blob gcs sftp] [--bucket cdp-demo]
    eval "$(.venv/bin/python scripts/local_servers.py env)"     # AIRFLOW_CONN_DEMO_<KIND> for each server
    .venv/bin/python scripts/local_servers.py stop

The servers outlive ``start`` (each in its own process group); their state (pids, ports, connections)
is kept in ``$CDP_SERVERS_DIR`` (default ``.cache/servers``), which ``stop`` reads and then removes.
``env`` prints shell ``export`` lines with test-only credentials of these local servers.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))

from servers.processes import SERVERS, MotoServer, Server, SshdServer, stop_process_group  # noqa: E402

log = logging.getLogger("local_servers")

# ---- streaming destinations' endpoints: the HTTP receiver, one Kafka broker (KRaft) and moto's server for
# Kinesis. `start http kafka kinesis --bucket NAME` creates the Kafka topic / Kinesis stream NAME; the HTTP
# receiver takes any path. (The HTTP receiver records what it received: GET /_control/requests.)
from servers.streaming import HttpReceiver, KafkaBroker  # noqa: E402

STREAMING_SERVERS: dict[str, type[Server]] = {"http": HttpReceiver, "kafka": KafkaBroker, "kinesis": MotoServer}
SERVERS = {**SERVERS, **STREAMING_SERVERS}


def prepare_streaming(kind: str, server: Server, name: str) -> None:
    """The demo's Kafka topic or Kinesis stream (the HTTP receiver needs nothing)."""
    if isinstance(server, KafkaBroker):
        server.create_topic(name)
    elif kind == "kinesis" and isinstance(server, MotoServer):
        import boto3

        connection = server.connection()
        client = boto3.client("kinesis", endpoint_url=server.url, region_name="us-east-1",
                              aws_access_key_id=connection["login"], aws_secret_access_key=connection["password"])
        client.create_stream(StreamName=name, ShardCount=1)
        client.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.2})
# ---- end of the streaming block


def state_dir() -> Path:
    return Path(os.environ.get("CDP_SERVERS_DIR", str(REPO_ROOT / ".cache" / "servers")))


def read_state() -> dict[str, dict[str, object]]:
    path = state_dir() / "state.json"
    return json.loads(path.read_text()) if path.exists() else {}


def write_state(state: dict[str, dict[str, object]]) -> None:
    state_dir().mkdir(parents=True, exist_ok=True)
    (state_dir() / "state.json").write_text(json.dumps(state, indent=2))


def create_bucket(kind: str, server: Server, bucket: str) -> None:
    """The demo's bucket / container, so that the destinations have somewhere to deliver."""
    from servers.targets import Target

    if kind in STREAMING_SERVERS:
        prepare_streaming(kind, server, bucket)
        return
    if isinstance(server, SshdServer):
        (server.root / bucket).mkdir(parents=True, exist_ok=True)
        return
    Target(kind, server, bucket=bucket).prepare()


def start(kinds: list[str], bucket: str) -> None:
    state = read_state()
    for kind in kinds:
        if kind in state:
            log.info("%s already running (pid %s, port %s)", kind, state[kind]["pid"], state[kind]["port"])
            continue
        server = SERVERS[kind](folder=str(state_dir() / kind))
        server.start()  # in its own process group: it outlives this script until `stop`
        create_bucket(kind, server, bucket)
        entry: dict[str, object] = {"pid": server.pid, "port": server.port, "folder": str(server.folder),
                                    "connection": server.connection(), "bucket": bucket}
        if isinstance(server, SshdServer):
            entry["root"] = str(server.root / bucket)
        state[kind] = entry
        write_state(state)
        log.info("%s listening on 127.0.0.1:%d (pid %d)", kind, server.port, server.pid)


def stop() -> None:
    state = read_state()
    for kind, entry in state.items():
        stop_process_group(int(str(entry["pid"])))
        log.info("%s stopped (pid %s)", kind, entry["pid"])
    shutil.rmtree(state_dir(), ignore_errors=True)


def env() -> str:
    lines = []
    for kind, entry in read_state().items():
        lines.append(f"export AIRFLOW_CONN_DEMO_{kind.upper()}={shlex.quote(json.dumps(entry['connection']))}")
        if "root" in entry:
            lines.append(f"export CDP_DEMO_SFTP_ROOT={shlex.quote(str(entry['root']))}")
    return "\n".join(lines) + ("\n" if lines else "")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)  # the SDK logs every request at INFO
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["start", "stop", "env"])
    parser.add_argument("kinds", nargs="*", help=f"servers to start (default: all of {', '.join(SERVERS)})")
    parser.add_argument("--bucket", default="cdp-demo", help="bucket / container / SFTP folder to create")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.kinds) - set(SERVERS))
    if unknown:
        parser.error(f"unknown server(s) {', '.join(unknown)}: choose from {', '.join(SERVERS)}")
    if args.command == "start":
        start(list(args.kinds) or list(SERVERS), args.bucket)
    elif args.command == "stop":
        stop()
    else:
        sys.stdout.write(env())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
