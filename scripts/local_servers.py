#!/usr/bin/env python
"""Start, describe and stop the loopback servers of the file destinations for the demo (the tests' servers).

    .venv/bin/python scripts/local_servers.py start [s3 azure_blob gcs sftp] [--bucket cdp-demo]
    eval "$(.venv/bin/python scripts/local_servers.py env)"     # AIRFLOW_CONN_DEMO_<KIND> for each server
    .venv/bin/python scripts/local_servers.py show              # what each server holds, read from the server
    .venv/bin/python scripts/local_servers.py needed            # the servers $CDP_WORKSPACE's demo_* connections need
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
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))

from servers.processes import SERVERS, AsyncsshSftpServer, MotoServer, Server, SshdServer, stop_process_group  # noqa: E402

# The demo's SFTP server is asyncssh's (the tests use both): its chroot lets the example's destination name a
# relative folder (outbound/{date}) as a partner's server would, and it shows a password login.
DEMO_SERVERS: dict[str, type[Server]] = {**SERVERS, "sftp": AsyncsshSftpServer}

log = logging.getLogger("local_servers")

# ---- streaming destinations' endpoints: the HTTP receiver, one Kafka broker (KRaft) and moto's server for
# Kinesis. `start http kafka kinesis --bucket NAME` creates the Kafka topic / Kinesis stream NAME; the HTTP
# receiver takes any path. (The HTTP receiver records what it received: GET /_control/requests.)
from servers.streaming import HttpReceiver, KafkaBroker  # noqa: E402

STREAMING_SERVERS: dict[str, type[Server]] = {"http": HttpReceiver, "kafka": KafkaBroker, "kinesis": MotoServer}
SERVERS = {**SERVERS, **STREAMING_SERVERS}
DEMO_SERVERS = {**DEMO_SERVERS, **STREAMING_SERVERS}


def kinesis_client(server: Server) -> Any:
    import boto3

    connection = server.connection()
    return boto3.client("kinesis", endpoint_url=server.url, region_name="us-east-1",
                        aws_access_key_id=connection["login"], aws_secret_access_key=connection["password"])


def prepare_streaming(kind: str, server: Server, name: str) -> None:
    """The demo's Kafka topic or Kinesis stream (the HTTP receiver needs nothing)."""
    if isinstance(server, KafkaBroker):
        server.create_topic(name)
    elif kind == "kinesis":
        client = kinesis_client(server)
        client.create_stream(StreamName=name, ShardCount=1)
        client.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.2})


def streamed(kind: str, server: Server, name: str) -> list[tuple[str, int]]:
    """(where, bytes) of what a streaming endpoint received: messages per HTTP path, records of the Kafka topic
    or Kinesis stream ``name``, read from the endpoint itself."""
    if isinstance(server, HttpReceiver):
        by_path: dict[str, list[int]] = {}
        for request in server.requests():
            if request["status"] == 200:
                sizes = by_path.setdefault(str(request["path"]), [])
                sizes += [len(json.dumps(m)) for m in request["messages"]]
        return [(f"{server.url}{path}: {len(sizes)} message(s)", sum(sizes)) for path, sizes in sorted(by_path.items())]
    if isinstance(server, KafkaBroker):
        records = server.consume(name, expected=10**9, timeout=5.0)
        return [(f"kafka://{server.bootstrap}/{name}: {len(records)} record(s)", sum(len(v) for _, v, _ in records))]
    client = kinesis_client(server)
    total, size = 0, 0
    for shard in client.describe_stream(StreamName=name)["StreamDescription"]["Shards"]:
        iterator = client.get_shard_iterator(StreamName=name, ShardId=shard["ShardId"],
                                             ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while iterator:
            page = client.get_records(ShardIterator=iterator, Limit=10_000)
            total += len(page["Records"])
            size += sum(len(r["Data"]) for r in page["Records"])
            iterator = page.get("NextShardIterator") if page["Records"] else None
    return [(f"kinesis://{name}: {total} record(s)", size)]
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
        return  # the SFTP root is the partner's whole drop folder
    Target(kind, server, bucket=bucket).prepare()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start(kinds: list[str], bucket: str) -> None:
    state = read_state()
    for kind in kinds:
        if kind in state and not alive(int(str(state[kind]["pid"]))):
            log.info("%s (pid %s) is no longer running: starting it again", kind, state[kind]["pid"])
            del state[kind]
        if kind in state:
            log.info("%s already running (pid %s, port %s)", kind, state[kind]["pid"], state[kind]["port"])
            continue
        server = DEMO_SERVERS[kind](folder=str(state_dir() / kind))
        server.start()  # in its own process group: it outlives this script until `stop`
        create_bucket(kind, server, bucket)
        entry: dict[str, object] = {"pid": server.pid, "port": server.port, "folder": str(server.folder),
                                    "connection": server.connection(), "bucket": bucket}
        if isinstance(server, SshdServer):
            entry["root"] = str(server.root)  # where the SFTP destination's files land on this machine
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
    return "\n".join(lines) + ("\n" if lines else "")


def stored_files(kind: str, server: Server, bucket: str) -> list[tuple[str, int]]:
    """(path, bytes) of every file the server holds, read from the server itself (not from the platform's ledger)."""
    from servers.processes import AzuriteServer, FakeGcsServer, MotoServer

    if kind in STREAMING_SERVERS:
        return streamed(kind, server, bucket)
    if isinstance(server, MotoServer):
        pages = server.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return [(f"s3://{bucket}/{o['Key']}", int(o["Size"])) for page in pages for o in page.get("Contents", [])]
    if isinstance(server, AzuriteServer):
        container = server.service().get_container_client(bucket)
        return [(f"{bucket}/{b.name}", int(b.size)) for b in container.list_blobs()]
    if isinstance(server, FakeGcsServer):
        return [(f"gs://{bucket}/{b.name}", int(b.size)) for b in server.client().list_blobs(bucket)]
    assert isinstance(server, SshdServer)
    root = server.root
    return [(f"sftp:/{p.relative_to(root)}", p.stat().st_size) for p in sorted(root.rglob("*")) if p.is_file()]


def show() -> str:
    """What each running server holds, one line per file."""
    lines = []
    for kind, entry in read_state().items():
        server = DEMO_SERVERS[kind](folder=str(entry["folder"]), port=int(str(entry["port"])))
        files = sorted(stored_files(kind, server, str(entry["bucket"])))
        lines.append(f"{kind} (127.0.0.1:{entry['port']}): {len(files)} file(s)")
        lines += [f"  {path} ({size} bytes)" for path, size in files]
    return "\n".join(lines) + ("\n" if lines else "")


def needed(workspace: str) -> list[str]:
    """The servers the workspace's destinations need here: those naming a ``demo_<kind>`` connection that the
    environment does not define (a user who points ``demo_s3`` at a real bucket gets no local server)."""
    from cdp.storage import env_var_name
    from cdp.workspace.loader import load_workspace

    kinds = []
    for dest in load_workspace(workspace).destinations.values():
        kind, connection = dest.type_name, dest.connection
        demo = kind in DEMO_SERVERS and connection == f"demo_{kind}"
        if demo and env_var_name(str(connection)) not in os.environ:
            kinds.append(kind)
    return sorted(set(kinds))


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)  # the SDK logs every request at INFO
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["start", "stop", "env", "show", "needed"])
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
    elif args.command == "needed":
        sys.stdout.write(" ".join(needed(os.environ.get("CDP_WORKSPACE", str(REPO_ROOT / "examples" / "retail"))))
                         + "\n")
    elif args.command == "show":
        sys.stdout.write(show())
    else:
        sys.stdout.write(env())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
