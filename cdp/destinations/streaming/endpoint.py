"""The settings a sender needs in an executor: the destination's keys and its Airflow connection, resolved once.

The connection is read on the driver (from the ``AIRFLOW_CONN_*`` variable the operator put in the job's
environment, see :mod:`cdp.storage.connections`) and shipped to the executors inside the task closure,
never on a command line; :meth:`Endpoint.secrets` lists what must be masked in anything stored or logged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from cdp.errors import DestinationError


@dataclass(frozen=True)
class ConnectionInfo:
    """The fields of an Airflow connection a sender reads (``extra`` parsed)."""

    conn_id: str
    conn_type: str | None = None
    host: str | None = None
    port: int | None = None
    schema: str | None = None
    login: str | None = None
    password: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        # Never print a password or an extra (tokens, keys) by accident, e.g. in a Spark task error.
        return f"ConnectionInfo(conn_id={self.conn_id!r}, conn_type={self.conn_type!r}, host={self.host!r})"

    def secrets(self) -> list[str]:
        """Every value of this connection that must never be stored or logged."""
        found = [self.password or ""]
        found += [str(v) for k, v in self.extra.items() if k in SECRET_EXTRAS and v]
        return [s for s in found if s]

    def require(self, key: str) -> str:
        """An extra the destination needs, or a DestinationError naming the connection and the key."""
        value = self.extra.get(key)
        if not value:
            raise DestinationError(f"Airflow connection '{self.conn_id}' has no '{key}' in its extra; add it")
        return str(value)


SECRET_EXTRAS = ("client_secret", "client_key", "token", "sasl_password", "aws_secret_access_key")


def resolve_connection(conn_id: str) -> ConnectionInfo:
    """The Airflow connection ``conn_id`` as a :class:`ConnectionInfo` (a DestinationError when undefined)."""
    from cdp.storage.connections import get_connection

    conn = get_connection(conn_id)
    extra = conn.extra_dejson if hasattr(conn, "extra_dejson") else json.loads(conn.extra or "{}")
    return ConnectionInfo(conn_id=conn_id, conn_type=conn.conn_type, host=conn.host, port=conn.port,
                          schema=conn.schema, login=conn.login, password=conn.password, extra=dict(extra or {}))
