"""SFTP with the SFTP provider's ``SFTPHook`` (paramiko), the host key always verified.

A put writes ``.<name>.<uuid>.tmp`` in the remote folder, then renames it over ``name`` with the
``posix-rename@openssh.com`` extension (atomic, replaces an existing file; OpenSSH and most servers
have it). A killed upload leaves the temporary file, removed by :meth:`SftpTransport.cleanup_temporary`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import posixpath
import stat as stat_mode
from typing import Any

from cdp.errors import DestinationError
from cdp.storage.base import (
    CHUNK_BYTES,
    Failure,
    RemoteFile,
    RetryPolicy,
    Transport,
    exception_chain,
    is_temporary_name,
    network_failure,
    temporary_name,
)
from cdp.storage.connections import get_connection


def fingerprint(key: Any) -> str:
    """The OpenSSH-style SHA256 fingerprint of a paramiko key (``SHA256:...``)."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class SftpTransport(Transport):
    """Files in a folder of an SFTP server.

    Connection (type ``sftp``): host, port, login; password, or extra ``private_key`` (the PEM text,
    with ``private_key_passphrase`` if it is encrypted) or ``key_file``; extra ``host_key`` (required):
    the server's public host key, ``ssh-ed25519 AAAA...`` as in ``known_hosts``, checked with the partner.
    ``no_host_key_check`` and ``allow_host_key_change`` are refused.
    """

    kind = "sftp"

    def __init__(self, connection_id: str, path: str = "", *, retry: RetryPolicy | None = None) -> None:
        if not connection_id:
            raise DestinationError("an sftp destination needs a connection (host, login, host_key)")
        conn = get_connection(connection_id)
        extra = conn.extra_dejson
        self.host = conn.host or ""
        self.port = int(conn.port or 22)
        self.path = path.rstrip("/") or ("/" if path.startswith("/") else ".")
        # A relative folder is relative to the login's home folder on the server.
        relative = self.path.removeprefix("./").removeprefix(".")
        shown = self.path if self.path.startswith("/") else f"/{relative}" if relative else ""
        super().__init__(f"sftp://{self.host}:{self.port}{shown}", connection_id, retry or RetryPolicy())
        self._add_secret(conn.password, extra.get("private_key"), extra.get("private_key_passphrase"))
        if not self.host:
            raise DestinationError(f"connection '{connection_id}' has no host: set the SFTP server's host name")
        for unsafe in ("no_host_key_check", "allow_host_key_change", "ignore_hostkey_verification"):
            if str(extra.get(unsafe, "false")).lower() == "true":
                raise DestinationError(
                    f"connection '{connection_id}' sets {unsafe}: the host key of sftp://{self.host}:{self.port} "
                    "must be verified; remove it and set extra.host_key to the server's public host key")
        if not str(extra.get("host_key") or "").strip():
            raise DestinationError(
                f"connection '{connection_id}' has no host_key: the host key of sftp://{self.host}:{self.port} is "
                "never accepted unverified; set extra.host_key to the server's public host key (the "
                "'ssh-ed25519 AAAA...' line of its known_hosts entry, confirmed with the server's owner)")
        self._hook: Any = None
        self._sftp: Any = None
        self._ssh: Any = None
        self._stale_temps: list[str] = []

    @property
    def sftp(self) -> Any:
        """The open paramiko SFTPClient (connects on first use)."""
        if self._sftp is None:
            from airflow.providers.sftp.hooks.sftp import SFTPHook

            try:
                # conn_retry_attempts=1: our tenacity policy owns the retries (one budget, logged).
                self._hook = SFTPHook(ssh_conn_id=self.connection_id, conn_retry_attempts=1,
                                      conn_timeout=int(max(1, self.retry.timeout)),
                                      banner_timeout=self.retry.timeout)
            except ValueError as exc:  # a host_key the provider cannot parse
                raise DestinationError(f"connection '{self.connection_id}': extra.host_key is not a valid public "
                                       f"host key ({exc}); copy the server's 'ssh-ed25519 AAAA...' line") from None
            # Only the connection's own password or key: not whatever keys the worker's ~/.ssh holds.
            self._hook.look_for_keys = False
            self._sftp = self._hook.get_conn()  # SSHHook.get_conn checks the host key, then SFTP opens
            self._ssh = self._hook.client
            self._sftp.get_channel().settimeout(self.retry.timeout)
        return self._sftp

    def _reset(self) -> None:
        """Drop a broken connection so that the next attempt reconnects."""
        for closable in (self._sftp, self._ssh):
            if closable is not None:
                with contextlib.suppress(Exception):  # closing a dead connection may fail in any way
                    closable.close()
        self._sftp = None
        self._ssh = None
        self._hook = None

    def _remote_path(self, name: str) -> str:
        return posixpath.join(self.path, name)

    def _ensure_folder(self) -> None:
        try:
            self.sftp.stat(self.path)
        except FileNotFoundError:
            current = "/" if self.path.startswith("/") else ""
            for part in [p for p in self.path.split("/") if p and p != "."]:
                current = posixpath.join(current, part) if current else part
                try:
                    self.sftp.stat(current)
                except FileNotFoundError:
                    self.sftp.mkdir(current)

    def _guarded(self, call: Any) -> Any:
        try:
            return call()
        except Exception:
            self._reset()
            raise

    def _put(self, local_path: str, name: str, sha256: str) -> None:
        def upload() -> None:
            self._ensure_folder()
            # A retry removes the temporary file its failed predecessor left when the connection died.
            for stale in list(self._stale_temps):
                with contextlib.suppress(FileNotFoundError):
                    self.sftp.remove(stale)
                self._stale_temps.remove(stale)
            temp = self._remote_path(temporary_name(name))
            self._stale_temps.append(temp)
            with open(local_path, "rb") as src, self.sftp.open(temp, "wb") as dst:
                dst.set_pipelined(True)
                while piece := src.read(CHUNK_BYTES):
                    dst.write(piece)
            self.sftp.posix_rename(temp, self._remote_path(name))
            self._stale_temps.remove(temp)

        self._guarded(upload)

    def _remote(self, name: str, attrs: Any) -> RemoteFile:
        return RemoteFile(name=name, size=int(attrs.st_size or 0), sha256=None, location=self.location(name))

    def _stat(self, name: str) -> RemoteFile | None:
        def stat() -> RemoteFile | None:
            try:
                attrs = self.sftp.stat(self._remote_path(name))
            except FileNotFoundError:
                return None
            return self._remote(name, attrs) if stat_mode.S_ISREG(attrs.st_mode or 0) else None

        result: RemoteFile | None = self._guarded(stat)
        return result

    def _entries(self) -> list[Any]:
        try:
            return list(self.sftp.listdir_attr(self.path))
        except FileNotFoundError:
            return []

    def _list(self) -> list[RemoteFile]:
        def listing() -> list[RemoteFile]:
            return [self._remote(e.filename, e) for e in self._entries() if stat_mode.S_ISREG(e.st_mode or 0)]

        result: list[RemoteFile] = self._guarded(listing)
        return result

    def _get(self, name: str, local_path: str) -> None:
        def download() -> None:
            with self.sftp.open(self._remote_path(name), "rb") as src, open(local_path, "wb") as dst:
                src.prefetch()
                while piece := src.read(CHUNK_BYTES):
                    dst.write(piece)

        self._guarded(download)

    def _delete(self, name: str) -> None:
        def delete() -> None:
            with contextlib.suppress(FileNotFoundError):
                self.sftp.remove(self._remote_path(name))

        self._guarded(delete)

    def _cleanup_temporary(self) -> int:
        def cleanup() -> int:
            removed = 0
            for entry in self._entries():
                if stat_mode.S_ISREG(entry.st_mode or 0) and is_temporary_name(entry.filename):
                    self.sftp.remove(self._remote_path(entry.filename))
                    removed += 1
            return removed

        result: int = self._guarded(cleanup)
        return result

    def _close(self) -> None:
        self._reset()

    def _classify(self, exc: Exception) -> Failure:
        import paramiko

        conn = self._connection_hint()
        where = f"sftp://{self.host}:{self.port}"
        for err in exception_chain(exc):
            if isinstance(err, paramiko.BadHostKeyException):
                return Failure(False, f"the host key of {where} ({err.key.get_name()} {fingerprint(err.key)}) does "
                               f"not match extra.host_key of {conn} ({fingerprint(err.expected_key)})",
                               "Refusing to connect: if the server's owner confirms a new key, update "
                               "extra.host_key; otherwise someone may be intercepting the connection")
            if isinstance(err, paramiko.SSHException) and "not found in known_hosts" in str(err):
                return Failure(False, f"the host key type of {where} does not match extra.host_key of {conn}",
                               "Refusing to connect: set extra.host_key to the server's key of the type it offers")
            if isinstance(err, paramiko.AuthenticationException):
                return Failure(False, "authentication failed",
                               f"Check the login and the password or private key of {conn}")
            if isinstance(err, PermissionError):
                return Failure(False, f"permission denied on {self.path}",
                               f"Check that the login of {conn} may write to the folder")
        for err in exception_chain(exc):
            if isinstance(err, paramiko.ssh_exception.NoValidConnectionsError):
                return Failure(True, "connection refused", self.transient_hint())
        reason = network_failure(exc)
        if reason:
            return Failure(True, reason, self.transient_hint())
        for err in exception_chain(exc):
            if isinstance(err, paramiko.SSHException):
                return Failure(True, "connection lost", self.transient_hint())
            if isinstance(err, OSError) and "Socket is closed" in str(err):
                return Failure(True, "connection lost", self.transient_hint())
        return Failure(False, f"{type(exc).__name__}: {exc}", f"Check the destination and {conn}")
