"""A PostgreSQL server on 127.0.0.1 for the real-scheduler e2e: Airflow's metadata database.

Debian's server binaries (``/usr/lib/postgresql/<version>/bin``, installed by ``make setup``): a cluster made by
``initdb`` in a scratch folder, one database ``airflow`` owned by a user of that name with a generated password,
durability off (a test cluster lives minutes). PostgreSQL refuses to run as root: under root the cluster belongs
to, and the server runs as, the ``postgres`` user Debian's package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import subprocess
from pathlib import Path

from servers.processes import Server, wait_for_port

SERVICE_USER = "postgres"


def binaries() -> Path:
    """The newest installed PostgreSQL server's bin folder."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise RuntimeError("PostgreSQL's server is not installed: run `make setup` (it installs Debian's postgresql)")
    return Path(found[-1]).parent


class PostgresServer(Server):
    """PostgreSQL with one database ``airflow``; :attr:`sqlalchemy_url` is Airflow's ``sql_alchemy_conn``."""

    name = "postgres"
    database = "airflow"
    user = "airflow"

    def __init__(self, folder: str | None = None, port: int | None = None) -> None:
        super().__init__(folder, port)
        self.bin = binaries()
        self.password = secrets.token_urlsafe(18)
        self.data = self.folder / "data"
        self.sockets = self.folder / "sockets"

    def _as_service_user(self, command: list[str]) -> list[str]:
        return ["runuser", "-u", SERVICE_USER, "--", *command] if os.geteuid() == 0 else command

    def prepare(self) -> None:
        self.sockets.mkdir(exist_ok=True)
        password_file = self.folder / "password"
        password_file.write_text(self.password + "\n", encoding="utf-8")
        if os.geteuid() == 0:
            service = pwd.getpwnam(SERVICE_USER)
            for path in (self.folder, self.sockets, password_file):
                os.chown(path, service.pw_uid, service.pw_gid)
        password_file.chmod(0o600)
        subprocess.run(self._as_service_user([
            str(self.bin / "initdb"), "-D", str(self.data), "-U", self.user, f"--pwfile={password_file}",
            "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"]),
            check=True, capture_output=True, cwd=self.folder)
        password_file.unlink()

    def command(self) -> list[str]:
        return self._as_service_user([
            str(self.bin / "postgres"), "-D", str(self.data), "-h", "127.0.0.1", "-p", str(self.port),
            "-k", str(self.sockets), "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            "-c", "max_connections=200"])

    def wait_ready(self) -> None:
        wait_for_port(self.port, self.process, self.name, timeout=120)
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user, password=self.password,
                                      dbname="postgres")
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE {self.database} OWNER {self.user}")
        finally:
            connection.close()

    def stop(self) -> None:
        """A fast shutdown (clients disconnected, no checkpoint wait), then the process group and the folder."""
        if self.process is not None and self.process.poll() is None:
            subprocess.run(self._as_service_user([str(self.bin / "pg_ctl"), "stop", "-D", str(self.data),
                                                  "-m", "fast", "-w", "-t", "30"]),
                           capture_output=True, check=False, cwd=self.folder)
        super().stop()

    @property
    def sqlalchemy_url(self) -> str:
        return f"postgresql+psycopg2://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"
