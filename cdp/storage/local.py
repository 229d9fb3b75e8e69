"""A local folder (a landing zone under the exports root): temp file beside the target, fsync, rename."""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path

from cdp.errors import DestinationError
from cdp.storage.base import (
    CHUNK_BYTES,
    Failure,
    RemoteFile,
    RetryPolicy,
    Transport,
    is_temporary_name,
    network_failure,
    temporary_name,
)

log = logging.getLogger(__name__)


class LocalTransport(Transport):
    """Files in ``root`` (created when missing). No metadata store: ``sha256`` of a RemoteFile is None.

    A put writes ``.<name>.<uuid>.tmp`` in the same folder (same file system, so the rename is atomic),
    fsyncs it, renames it over ``name`` with ``os.replace`` and fsyncs the folder.
    """

    kind = "local"

    def __init__(self, root: str, *, retry: RetryPolicy | None = None) -> None:
        self.root = Path(root).absolute()
        super().__init__(self.root.as_uri(), None, retry or RetryPolicy(attempts=1))

    def _ensure_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def _put(self, local_path: str, name: str, sha256: str) -> None:
        self._ensure_root()
        temp = self.root / temporary_name(name)
        try:
            with open(local_path, "rb") as src, open(temp, "wb") as dst:
                while piece := src.read(CHUNK_BYTES):
                    dst.write(piece)
                dst.flush()
                os.fsync(dst.fileno())
            os.replace(temp, self.root / name)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        self._fsync_folder()

    def _fsync_folder(self) -> None:
        # The rename is durable only once the folder entry is on disk.
        fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _file(self, path: Path) -> RemoteFile:
        return RemoteFile(name=path.name, size=path.stat().st_size, sha256=None, location=self.location(path.name))

    def _stat(self, name: str) -> RemoteFile | None:
        path = self.root / name
        return self._file(path) if path.is_file() else None

    def _list(self) -> list[RemoteFile]:
        if not self.root.is_dir():
            return []
        return [self._file(p) for p in self.root.iterdir() if p.is_file()]

    def _get(self, name: str, local_path: str) -> None:
        path = self.root / name
        if not path.is_file():
            raise DestinationError(f"cannot download {self.location(name)}: no such file")
        with open(path, "rb") as src, open(local_path, "wb") as dst:
            while piece := src.read(CHUNK_BYTES):
                dst.write(piece)

    def _delete(self, name: str) -> None:
        (self.root / name).unlink(missing_ok=True)

    def _cleanup_temporary(self) -> int:
        if not self.root.is_dir():
            return 0
        removed = 0
        for path in self.root.iterdir():
            if path.is_file() and is_temporary_name(path.name):
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def remove_older_than(self, days: float, names: Iterable[str] | None = None, *,
                          now: float | None = None) -> list[str]:
        """Landing-zone retention: delete the files last modified more than ``days`` days ago.

        :param names: only these files are candidates (e.g. the files the ledger says this destination
            delivered), so that retention never removes what someone else put in the folder; None = all.
        :param now: the reference time (epoch seconds); defaults to the current time.
        :return: the names removed, sorted.
        """
        if days < 0:
            raise DestinationError(f"retention of {days} days for {self.folder_location} is negative")
        cutoff = (time.time() if now is None else now) - days * 86400
        wanted = None if names is None else set(names)
        removed = []
        for remote in self.list():
            if wanted is not None and remote.name not in wanted:
                continue
            path = self.root / remote.name
            if path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                removed.append(remote.name)
        if removed:
            log.info("retention: removed %d file(s) older than %s days from %s", len(removed), days,
                     self.folder_location)
        return sorted(removed)

    def _classify(self, exc: Exception) -> Failure:
        reason = network_failure(exc)
        if reason:
            return Failure(True, reason, self.transient_hint())
        if isinstance(exc, PermissionError):
            return Failure(False, "permission denied", "Give the worker's user write access to the folder")
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return Failure(False, "no space left on the device", "Free space on the exports volume, then re-run")
        return Failure(False, f"{type(exc).__name__}: {exc}", "Check the folder, then re-run the task")
