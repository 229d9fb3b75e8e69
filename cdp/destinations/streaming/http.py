"""The ``http`` sender: a JSON array of messages per POST, with auth, TLS and an idempotency key per batch.

The base URL is the connection's host (with its scheme, else the connection's ``schema``, else https, and
its port), then the destination's ``path``, as Airflow's HTTP hook builds it. Auth:

- ``bearer``: ``Authorization: Bearer <connection password>``;
- ``oauth2_client_credentials`` / ``oauth2_password``: a token from the extra's ``token_url`` (client id and
  secret from the extra, sent as HTTP basic auth per RFC 6749; the password grant's user is the
  connection's login / password), cached per executor process until 30 s before it expires and fetched
  again on expiry or when the API answers 401 (once per request).

TLS certificates are verified (the extra's ``ca_cert`` PEM, else the system's store) unless the destination
says ``verify_tls: false``; ``mutual_tls`` presents the extra's ``client_cert`` / ``client_key`` (PEM).
"""

from __future__ import annotations

import contextlib
import email.utils
import gzip
import logging
import os
import tempfile
import threading
import time
from typing import Any

import requests

from cdp.destinations.streaming.delivery import Message, Outcome, Problem, truncate
from cdp.destinations.streaming.endpoint import ConnectionInfo
from cdp.errors import DestinationError
from cdp.workspace.models import HttpDestination

log = logging.getLogger(__name__)

TOKEN_MARGIN_SECONDS = 30.0
# Statuses a retry can fix: the request timed out at the server, too many requests, or a server error.
RETRYABLE_STATUSES = frozenset({408, 425, 429})
# Refusals that are about the request as a whole (credentials, address): a batch is not split to find a record.
NOT_ABOUT_RECORDS = frozenset({401, 403, 404, 405, 407})

# token_url, client_id, user -> (access token, monotonic expiry); one cache per executor process.
_TOKENS: dict[tuple[str, str, str], tuple[str, float]] = {}
_TOKENS_LOCK = threading.Lock()


def base_url(conn: ConnectionInfo) -> str:
    """The connection's URL (scheme://host[:port]) as Airflow's HTTP hook builds it."""
    host = (conn.host or "").rstrip("/")
    if not host:
        raise DestinationError(f"Airflow connection '{conn.conn_id}' has no host: set it to the API's base URL")
    if "://" not in host:
        host = f"{conn.schema or 'https'}://{host}"
    if conn.port:
        host = f"{host}:{conn.port}"
    return host


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number of seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class HttpSender:
    """POSTs batches to one destination; open one per partition (see :class:`~.delivery.Sender`)."""

    def __init__(self, dest: HttpDestination, conn: ConnectionInfo) -> None:
        self.dest = dest
        self.conn = conn
        self.url = base_url(conn) + dest.path
        self.session = requests.Session()
        self.session.trust_env = False  # no proxy or netrc from the worker's environment: only the connection
        self._files: list[str] = []
        self.verify: bool | str = dest.verify_tls
        if dest.verify_tls and conn.extra.get("ca_cert"):
            self.verify = self._pem_file(str(conn.extra["ca_cert"]))
        if not dest.verify_tls:
            log.warning("destination %s: TLS certificates are not verified (verify_tls: false)", dest.name)
        self.cert: tuple[str, str] | None = None
        if dest.mutual_tls:
            self.cert = (self._pem_file(conn.require("client_cert")), self._pem_file(conn.require("client_key")))
        self.headers = {**dest.headers, "Content-Type": "application/json"}
        if dest.gzip:
            self.headers["Content-Encoding"] = "gzip"

    def _pem_file(self, pem: str) -> str:
        # requests reads certificates and keys from files only: a private file, removed on close.
        handle, path = tempfile.mkstemp(prefix="cdp-tls-", suffix=".pem")
        with os.fdopen(handle, "w", encoding="ascii") as out:
            out.write(pem)
        self._files.append(path)
        return path

    # ------------------------------------------------------------ auth

    def _token_key(self) -> tuple[str, str, str]:
        return (self.conn.require("token_url"), self.conn.require("client_id"), self.conn.login or "")

    def _fetch_token(self) -> str:
        data: dict[str, str] = {"grant_type": "client_credentials"}
        if self.dest.auth == "oauth2_password":
            data = {"grant_type": "password", "username": self.conn.login or "", "password": self.conn.password or ""}
        if self.dest.scopes:
            data["scope"] = " ".join(self.dest.scopes)
        token_url, client_id, _ = self._token_key()
        try:
            answer = self.session.post(token_url, data=data, auth=(client_id, self.conn.require("client_secret")),
                                       timeout=self.dest.timeout_seconds, verify=self.verify, cert=self.cert)
        except requests.RequestException as exc:
            raise _TokenUnavailable(Problem("oauth2_token_unreachable", True, response=type(exc).__name__)) from None
        if answer.status_code != 200:
            retryable = answer.status_code >= 500 or answer.status_code in RETRYABLE_STATUSES
            raise _TokenUnavailable(Problem(f"oauth2_token_{answer.status_code}", retryable, answer.status_code,
                                            truncate(answer.text, self.conn.secrets()), about_records=False))
        body: dict[str, Any] = answer.json()
        token = str(body["access_token"])
        expires = float(body.get("expires_in", 3600))
        with _TOKENS_LOCK:
            _TOKENS[self._token_key()] = (token, time.monotonic() + expires - TOKEN_MARGIN_SECONDS)
        return token

    def _token(self, refresh: bool) -> str:
        if not refresh:
            with _TOKENS_LOCK:
                cached = _TOKENS.get(self._token_key())
            if cached is not None and cached[1] > time.monotonic():
                return cached[0]
        return self._fetch_token()

    def _auth_header(self, refresh: bool) -> dict[str, str]:
        if self.dest.auth == "none":
            return {}
        if self.dest.auth == "bearer":
            if not self.conn.password:
                raise DestinationError(f"Airflow connection '{self.conn.conn_id}' has no password: auth bearer "
                                       "sends it as the token")
            return {"Authorization": f"Bearer {self.conn.password}"}
        return {"Authorization": f"Bearer {self._token(refresh)}"}

    # ------------------------------------------------------------ send

    def send(self, batch: list[Message], idempotency_key: str) -> Outcome:
        """POST the batch once; 2xx acknowledges it all (see the module doc for what else)."""
        body = b"[" + b",".join(m.payload for m in batch) + b"]"
        if self.dest.gzip:
            body = gzip.compress(body, mtime=0)
        for refreshed in (False, True):
            try:
                headers = {**self.headers, self.dest.idempotency_header: idempotency_key,
                           **self._auth_header(refresh=refreshed)}
            except _TokenUnavailable as exc:
                return Outcome.all_failed(batch, exc.problem)
            try:
                answer = self.session.post(self.url, data=body, headers=headers, timeout=self.dest.timeout_seconds,
                                           verify=self.verify, cert=self.cert, allow_redirects=False)
            except requests.Timeout:
                return Outcome.all_failed(batch, Problem("timeout", True))
            except requests.exceptions.SSLError as exc:
                # A certificate problem does not go away by retrying: say what it is, without the request.
                return Outcome.all_failed(batch, Problem("tls_error", False, response=truncate(str(exc.__class__
                                                                                                 .__name__)),
                                                         about_records=False))
            except requests.ConnectionError:
                return Outcome.all_failed(batch, Problem("connection_error", True))
            status = answer.status_code
            if 200 <= status < 300:
                return Outcome.all_acknowledged(batch)
            if status == 401 and self.dest.auth.startswith("oauth2") and not refreshed:
                continue  # the token expired early or was revoked: fetch a new one, once
            text = truncate(answer.text, self.conn.secrets())
            retryable = status >= 500 or status in RETRYABLE_STATUSES
            return Outcome.all_failed(batch, Problem(f"http_{status}", retryable, status, text,
                                                     retry_after_seconds(answer.headers.get("Retry-After")),
                                                     about_records=status not in NOT_ABOUT_RECORDS))
        raise AssertionError("unreachable: the loop returns")  # pragma: no cover

    def close(self) -> None:
        self.session.close()
        for path in self._files:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        self._files.clear()


class _TokenUnavailable(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.error_class)
        self.problem = problem
