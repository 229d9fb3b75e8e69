"""An HTTP API that receives streaming-destination batches, with fault injection, for the tests and the demo.

Run as ``python http_receiver.py PORT [--tls CERT KEY [--client-ca CA]]`` (127.0.0.1 only). It accepts
``POST`` of a JSON array (optionally gzip) on any path but the control ones and records every request it
read: path, headers, the messages and the status it answered (``GET /_control/requests``). Faults are
queued with ``POST /_control/faults`` (a JSON list, each consumed by the next matching API request):

- ``{"status": 429, "retry_after": "1"}`` / ``{"status": 500}``: answer that status (not recorded as accepted);
- ``{"slow": 3.0}``: accept the batch (recorded with status 200) but answer only after that many seconds;
- ``{"reset": true}``: close the connection without an answer (TCP RST) before reading the body;
- ``{"reject_profile": "<profile id>"}`` (kept until reset): answer 400 to any batch holding a message of it;
- ``{"expire_tokens": true}``: every OAuth2 token issued so far is refused (401) from now on.

Auth (``POST /_control/auth``): ``{"mode": "none"}``, ``{"mode": "bearer", "token": ...}`` or ``{"mode":
"oauth2", "client_id": ..., "client_secret": ..., "username": ..., "password": ..., "expires_in": 3600}``;
OAuth2 tokens come from ``POST /oauth/token`` (client credentials or password grant, client auth by HTTP
basic). ``POST /_control/reset`` forgets requests, faults and tokens; ``POST /_control/record`` with ``false``
only counts accepted messages (``accepted`` in the requests answer), for benchmarks.
"""

from __future__ import annotations

import base64
import gzip
import json
import secrets
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOCK = threading.Lock()
STATE: dict[str, Any] = {"requests": [], "faults": [], "rejected": set(), "auth": {"mode": "none"},
                         "tokens": {}, "token_requests": 0, "record": True, "accepted": 0}


def reset_state() -> None:
    STATE.update(requests=[], faults=[], rejected=set(), auth={"mode": "none"}, tokens={}, token_requests=0,
                 record=True, accepted=0)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: the tests read the recorded requests, not a log

    def _answer(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body if body is not None else {}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self) -> None:
        if self.path == "/_control/requests":
            with LOCK:
                return self._answer(200, {"requests": STATE["requests"], "token_requests": STATE["token_requests"],
                                          "accepted": STATE["accepted"]})
        return self._answer(404, {"error": "not found"})

    def do_POST(self) -> None:
        if self.path.startswith("/_control/"):
            return self._control(json.loads(self._body() or b"null"))
        if self.path == "/oauth/token":
            return self._token()
        with LOCK:
            fault = STATE["faults"].pop(0) if STATE["faults"] else None
        if fault and fault.get("reset"):
            # SO_LINGER 0: the close sends a RST, as a crashing proxy or a dropped connection would.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return None
        raw = self._body()
        auth_problem = self._check_auth()
        if auth_problem is not None:
            return self._answer(401, {"error": auth_problem})
        if fault and "status" in fault:
            headers = {"Retry-After": str(fault["retry_after"])} if "retry_after" in fault else {}
            return self._answer(int(fault["status"]), {"error": f"injected {fault['status']}"}, headers)
        gzipped = self.headers.get("Content-Encoding") == "gzip"
        with LOCK:
            record_all = STATE["record"]
        if not record_all:  # benchmark mode: count the messages, keep nothing
            count = raw.count(b'"messageId"') if not gzipped else gzip.decompress(raw).count(b'"messageId"')
            with LOCK:
                STATE["accepted"] += count
            return self._answer(200, {"accepted": count})
        messages = json.loads(gzip.decompress(raw) if gzipped else raw)
        with LOCK:
            bad = [m["messageId"] for m in messages if m.get("profileId") in STATE["rejected"]]
        if bad:
            return self._answer(400, {"error": f"invalid record {bad[0]}"})
        record = {"path": self.path, "gzip": gzipped, "messages": messages, "status": 200,
                  "headers": {k.lower(): v for k, v in self.headers.items()}, "received_at": time.time()}
        with LOCK:
            STATE["requests"].append(record)
            STATE["accepted"] += len(messages)
        if fault and "slow" in fault:
            time.sleep(float(fault["slow"]))
        return self._answer(200, {"accepted": len(messages)})

    def _check_auth(self) -> str | None:
        with LOCK:
            auth = dict(STATE["auth"])
            tokens = dict(STATE["tokens"])
        given = self.headers.get("Authorization", "")
        if auth["mode"] == "bearer" and given != f"Bearer {auth['token']}":
            return "bad bearer token"
        if auth["mode"] == "oauth2":
            token = given.removeprefix("Bearer ")
            expiry = tokens.get(token)
            if expiry is None or expiry < time.time():
                return "token expired or unknown"
        return None

    def _token(self) -> None:
        with LOCK:
            auth = dict(STATE["auth"])
            STATE["token_requests"] += 1
        form = dict(urllib.parse.parse_qsl(self._body().decode()))
        basic = self.headers.get("Authorization", "").removeprefix("Basic ")
        client = base64.b64decode(basic).decode() if basic else ""
        if auth.get("mode") != "oauth2" or client != f"{auth['client_id']}:{auth['client_secret']}":
            return self._answer(401, {"error": "invalid_client"})
        if form.get("grant_type") == "password":
            if (form.get("username"), form.get("password")) != (auth.get("username"), auth.get("password")):
                return self._answer(400, {"error": "invalid_grant"})
        elif form.get("grant_type") != "client_credentials":
            return self._answer(400, {"error": "unsupported_grant_type"})
        token = secrets.token_hex(16)
        expires_in = int(auth.get("expires_in", 3600))
        with LOCK:
            STATE["tokens"][token] = time.time() + expires_in
        return self._answer(200, {"access_token": token, "token_type": "Bearer", "expires_in": expires_in})

    def _control(self, body: Any) -> None:
        with LOCK:
            if self.path == "/_control/reset":
                reset_state()
            elif self.path == "/_control/record":
                STATE["record"] = bool(body)
            elif self.path == "/_control/auth":
                STATE["auth"] = body
            elif self.path == "/_control/faults":
                for fault in body:
                    if "reject_profile" in fault:
                        STATE["rejected"].add(fault["reject_profile"])
                    elif fault.get("expire_tokens"):
                        STATE["tokens"] = {t: 0.0 for t in STATE["tokens"]}
                    else:
                        STATE["faults"].append(fault)
            else:
                return self._answer(404, {"error": "unknown control"})
        return self._answer(200, {"ok": True})


def main(argv: list[str]) -> None:
    port = int(argv[0])
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    if "--tls" in argv:
        i = argv.index("--tls")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(argv[i + 1], argv[i + 2])
        if "--client-ca" in argv:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(argv[argv.index("--client-ca") + 1])
        server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
