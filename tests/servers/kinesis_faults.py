"""An HTTP proxy on 127.0.0.1 in front of moto's Kinesis that fails chosen records of a ``PutRecords`` call.

moto accepts every record of a call; real Kinesis may refuse some (a shard over its throughput, an internal
failure) inside an accepted call, with ``FailedRecordCount`` and an ``ErrorCode`` in place of the record's
sequence number. The proxy does what such a shard does: it withholds the chosen records from moto (so they
are not stored), forwards the rest, and splices a failure entry for each withheld record into moto's answer at
its place. Every other request is forwarded as it is.

``fail(partition_key, times)`` refuses the records of that partition key for their next ``times`` calls.
"""

from __future__ import annotations

import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from servers.processes import free_port

THROUGHPUT = "ProvisionedThroughputExceededException"
# Headers the proxy sets itself, or that describe the body it changed.
_HOP = {"content-length", "host", "connection", "transfer-encoding"}


class KinesisFaults:
    """Forward 127.0.0.1:<port> to moto at 127.0.0.1:<upstream_port>, refusing chosen records."""

    def __init__(self, upstream_port: int, error_code: str = THROUGHPUT) -> None:
        self.upstream_port = upstream_port
        self.error_code = error_code
        self.port = free_port()
        self.lock = threading.Lock()
        self.left: dict[str, int] = {}
        self.refused: list[str] = []  # partition keys, in the order they were refused
        self.put_calls = 0
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail(self, partition_key: str, times: int) -> None:
        with self.lock:
            self.left[partition_key] = times

    def __enter__(self) -> KinesisFaults:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass  # the test output stays readable

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                refused: list[int] = []
                if self.headers.get("X-Amz-Target", "").endswith(".PutRecords"):
                    body, refused = proxy._withhold(body)
                status, headers, answer = proxy._forward(self.command, self.path, dict(self.headers), body)
                if self.headers.get("X-Amz-Target", "").endswith(".PutRecords") and status == 200:
                    answer = proxy._splice(answer, refused)
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in _HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_POST

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, name=f"kinesis-faults-{self.port}", daemon=True).start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _withhold(self, body: bytes) -> tuple[bytes, list[int]]:
        """The request without the records to refuse, and their indices in the original call."""
        request = json.loads(body)
        kept, refused = [], []
        with self.lock:
            self.put_calls += 1
            for i, record in enumerate(request["Records"]):
                key = record["PartitionKey"]
                if self.left.get(key, 0) > 0:
                    self.left[key] -= 1
                    self.refused.append(key)
                    refused.append(i)
                else:
                    kept.append(record)
        request["Records"] = kept
        return json.dumps(request).encode("utf-8"), refused

    def _splice(self, answer: bytes, refused: list[int]) -> bytes:
        if not refused:
            return answer
        result = json.loads(answer)
        accepted = iter(result["Records"])
        total = len(result["Records"]) + len(refused)
        failure = {"ErrorCode": self.error_code, "ErrorMessage": "Rate exceeded for shard shardId-000000000000 "
                   "in stream under account 123456789012."}
        result["Records"] = [dict(failure) if i in refused else next(accepted) for i in range(total)]
        result["FailedRecordCount"] = result.get("FailedRecordCount", 0) + len(refused)
        return json.dumps(result).encode("utf-8")

    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes
                 ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=30)
        try:
            sent = {k: v for k, v in headers.items() if k.lower() not in _HOP}
            sent["Content-Length"] = str(len(body))
            connection.request(method, path, body=body if method == "POST" else None, headers=sent)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()
