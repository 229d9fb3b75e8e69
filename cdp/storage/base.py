"""The one transport interface every file destination implements.

A target module overrides a few primitives (``_put``, ``_stat``, ``_list``, ``_get``, ``_delete``,
``_cleanup_temporary``, ``_close`` and the failure classification); the public methods here are
template methods that add what every target shares: name checks, retries with backoff on transient
failures only, one :class:`~cdp.errors.DestinationError` per failure with a message that names the
location and what to do, secrets scrubbed from every message, and one log line per delivered file.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from cdp.errors import DestinationError

log = logging.getLogger(__name__)

T = TypeVar("T")

# Temporary names of our own uploads: ".<name>.<32 hex>.tmp" beside the final name (local, sftp).
TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<token>[0-9a-f]{32})\.tmp$")
# Streamed copies read and write in pieces of this size (never the whole file in memory).
CHUNK_BYTES = 1024 * 1024


def temporary_name(name: str) -> str:
    """A fresh temporary name for an upload of ``name`` (hidden, unique per attempt)."""
    return f".{name}.{uuid.uuid4().hex}.tmp"


def is_temporary_name(name: str) -> bool:
    """Whether ``name`` is one of our temporary upload names."""
    return TEMP_NAME.match(name) is not None


@dataclass(frozen=True)
class RemoteFile:
    """One file as the target stores it."""

    name: str  # relative to the transport's folder
    size: int
    sha256: str | None  # as stored with the object (metadata) when the target can hold it, else None
    location: str  # URI for logs and the ledger, never with credentials


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long a transient failure is retried (exponential backoff with full jitter).

    :param attempts: tries in all, the first included (1 = no retry).
    :param initial_wait: seconds of the first backoff (before jitter); doubles on each retry.
    :param max_wait: the longest single wait in seconds.
    :param timeout: seconds a connection attempt or a read may take before it counts as a transient failure.
    """

    attempts: int = 5
    initial_wait: float = 1.0
    max_wait: float = 30.0
    timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be at least 1, got {self.attempts}")


@dataclass(frozen=True)
class Failure:
    """How a target classifies an exception: transient (retry) or not, a short stable description, what to do."""

    transient: bool
    description: str
    hint: str


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and its causes (SDKs wrap the error that tells what happened, e.g. boto3's S3UploadFailedError),
    including exceptions carried as arguments (urllib3's ``ProtocolError('Connection aborted.', err)``)."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending.extend(a for a in current.args if isinstance(a, BaseException))
        # azure-core keeps the transport's error as inner_exception, botocore in kwargs["error"].
        inner = getattr(current, "inner_exception", None)
        kwargs = getattr(current, "kwargs", None)
        for extra in (inner, kwargs.get("error") if isinstance(kwargs, dict) else None):
            if isinstance(extra, BaseException):
                pending.append(extra)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                pending.append(linked)


def network_failure(exc: BaseException) -> str | None:
    """A short description of a plain socket-level failure anywhere in the chain, or None."""
    for err in exception_chain(exc):
        if isinstance(err, ConnectionRefusedError):
            return "connection refused"
        # A reset, a broken pipe and an EOF are one failure seen at different moments (which one a client
        # reports depends on timing): one description keeps the messages stable.
        if isinstance(err, ConnectionResetError | BrokenPipeError | ConnectionAbortedError | EOFError):
            return "connection lost"
        if isinstance(err, TimeoutError | socket.timeout):
            return "timed out"
    return None


class Transport(ABC):
    """A folder on a target: put files atomically, stat, list, get, delete, clean up killed attempts.

    :param location: the folder's URI without credentials (``s3://bucket/prefix``, ``sftp://host:22/path``).
    :param connection_id: the Airflow connection the credentials come from (None for a local folder).
    :param retry: the retry budget for transient failures.
    """

    kind: str = ""

    def __init__(self, location: str, connection_id: str | None, retry: RetryPolicy) -> None:
        self.folder_location = location.rstrip("/")
        self.connection_id = connection_id
        self.retry = retry
        self._secrets: list[str] = []

    # ---- what a target implements -------------------------------------------------------------

    @abstractmethod
    def _put(self, local_path: str, name: str, sha256: str) -> None:
        """Upload so that ``name`` appears only once complete (temp + rename, or a commit)."""

    @abstractmethod
    def _stat(self, name: str) -> RemoteFile | None:
        """The stored file, or None when there is none under ``name``."""

    @abstractmethod
    def _list(self) -> list[RemoteFile]:
        """Every complete file of the folder (not temporary ones, not sub-folders)."""

    @abstractmethod
    def _get(self, name: str, local_path: str) -> None:
        """Download ``name`` to ``local_path`` (streamed)."""

    @abstractmethod
    def _delete(self, name: str) -> None:
        """Remove ``name`` (no error when it is already gone)."""

    @abstractmethod
    def _cleanup_temporary(self) -> int:
        """Remove what killed attempts left behind; how many leftovers were removed."""

    @abstractmethod
    def _classify(self, exc: Exception) -> Failure:
        """Whether ``exc`` is transient, and how to describe it in one short phrase."""

    def _close(self) -> None:  # noqa: B027 - most targets have nothing to release
        """Release connections (default: nothing to release)."""

    # ---- the template methods every caller uses ------------------------------------------------

    def location(self, name: str) -> str:
        """The URI of ``name`` in this folder (no credentials)."""
        return f"{self.folder_location}/{name}"

    def put(self, local_path: str, name: str, *, sha256: str) -> RemoteFile:
        """Deliver ``local_path`` as ``name``: atomic for readers, overwrites, retried on transient failures.

        Returns the file as the target then reports it; the size must equal the local file's size.
        """
        check_file_name(name)
        if not os.path.exists(local_path):
            raise DestinationError(f"cannot upload {local_path}: no such file (render the file before delivering)")
        self._run("upload to", name, lambda: self._put(local_path, name, sha256))
        stored = self._run("check", name, lambda: self._stat(name))
        if stored is None:
            raise DestinationError(
                f"{self.location(name)} is missing right after its upload was confirmed: the target may delete "
                "new files (a lifecycle rule or a partner's pick-up job); check the target, then re-run the task")
        log.info("delivered %s (%d bytes)", stored.location, stored.size)
        return stored

    def stat(self, name: str) -> RemoteFile | None:
        """The file stored under ``name``, or None."""
        check_file_name(name)
        return self._run("check", name, lambda: self._stat(name))

    def list(self) -> list[RemoteFile]:
        """The complete files of the folder, sorted by name (temporary upload names excluded)."""
        files = self._run("list", "", self._list)
        return sorted((f for f in files if not is_temporary_name(f.name)), key=lambda f: f.name)

    def get(self, name: str, local_path: str) -> None:
        """Download ``name`` to ``local_path``."""
        check_file_name(name)
        self._run("download", name, lambda: self._get(name, local_path))

    def delete(self, name: str) -> None:
        """Remove ``name`` from the folder (nothing happens when it does not exist)."""
        check_file_name(name)
        self._run("delete", name, lambda: self._delete(name))

    def cleanup_temporary(self) -> int:
        """Remove the leftovers of killed attempts (our temporary names, unfinished multipart uploads).

        Call it before a new attempt, never while another attempt on the same folder is running.
        """
        removed = self._run("clean up temporary files in", "", self._cleanup_temporary)
        if removed:
            log.info("removed %d leftover(s) of earlier attempts from %s", removed, self.folder_location)
        return removed

    def close(self) -> None:
        """Release the connections this transport holds."""
        self._close()

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- shared machinery ----------------------------------------------------------------------

    def _add_secret(self, *values: object) -> None:
        """Remember secrets to scrub from messages, and hand them to Airflow's log masker."""
        from airflow.sdk.log import mask_secret

        for value in values:
            if isinstance(value, str) and value:
                mask_secret(value)
                self._secrets.append(value)

    def _redact(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def _run(self, what: str, name: str, call: Callable[[], T]) -> T:
        """Run ``call`` with the retry policy; turn the last failure into one DestinationError."""
        target = self.location(name) if name else self.folder_location

        def transient(exc: BaseException) -> bool:
            return isinstance(exc, Exception) and not isinstance(exc, DestinationError) and \
                self._classify(exc).transient

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            reason = self._classify(exc).description if isinstance(exc, Exception) else "unknown failure"
            log.warning("%s %s failed (attempt %d of %d): %s; retrying", what, target, state.attempt_number,
                        self.retry.attempts, self._redact(reason))

        retrying = Retrying(
            stop=stop_after_attempt(self.retry.attempts),
            wait=wait_random_exponential(multiplier=self.retry.initial_wait, max=self.retry.max_wait),
            retry=retry_if_exception(transient),
            before_sleep=before_sleep,
            reraise=True,
        )
        attempts = 0

        def counted() -> T:
            nonlocal attempts
            attempts += 1
            return call()

        try:
            return retrying(counted)
        except DestinationError:
            raise
        except Exception as exc:
            failure = self._classify(exc)
            tries = f" after {attempts} attempts" if failure.transient and attempts > 1 else ""
            raise DestinationError(self._redact(
                f"could not {what} {target}{tries}: {failure.description}. {failure.hint}")) from None

    def _connection_hint(self) -> str:
        return f"connection '{self.connection_id}'" if self.connection_id else "the destination"

    def transient_hint(self) -> str:
        """What to do when a target stays unreachable."""
        return (f"Check that the server is up and that {self._connection_hint()} points at it, then re-run "
                "the task (files already delivered are not sent again)")


def check_file_name(name: str) -> None:
    """Refuse a name that could leave the folder or hide: one path segment, no leading dot, no control chars."""
    problem = None
    if not name:
        problem = "it is empty"
    elif "/" in name or "\\" in name:
        problem = "it contains a path separator"
    elif name.startswith("."):
        problem = "it starts with a dot"
    elif any(ord(c) < 32 or ord(c) == 127 for c in name):
        problem = "it contains a control character"
    elif len(name.encode()) > 255:
        problem = "it is longer than 255 bytes"
    if problem:
        raise DestinationError(f"file name {name!r} cannot be delivered: {problem} (fix the file name template)")


def join_prefix(*parts: str | None) -> str:
    """Join key prefix parts with single slashes, no leading or trailing slash."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))
