"""Transports to file destinations: one interface (put atomically, stat, list, get, delete, clean up), one module
per target (local folder, S3, Azure Blob / ADLS Gen2, GCS, SFTP). Credentials come from Airflow connections.

Use :func:`open_transport` to get one from plain parameters, and :func:`connection_env` in an Airflow task to
hand the connections to the Spark job's environment.
"""

from __future__ import annotations

from cdp.storage.base import RemoteFile, RetryPolicy, Transport, is_temporary_name
from cdp.storage.connections import connection_env, env_var_name
from cdp.storage.factory import KINDS, open_transport

__all__ = ["KINDS", "RemoteFile", "RetryPolicy", "Transport", "connection_env", "env_var_name",
           "is_temporary_name", "open_transport"]
