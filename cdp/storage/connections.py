"""Airflow connections for the transports: resolved through the hooks, handed to the Spark job by environment.

In the Airflow task the connections come from wherever Airflow keeps them (metadata DB, a secrets
backend, ``AIRFLOW_CONN_*``). The export job runs as a ``spark-submit`` subprocess of the task, with
no task context: there the hooks' ``BaseHook.get_connection`` finds them in ``AIRFLOW_CONN_<ID>``
environment variables (JSON), which :func:`connection_env` produces in the task for the operator to
pass in the subprocess environment, never on its command line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from cdp.errors import DestinationError

_CONN_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


def env_var_name(connection_id: str) -> str:
    """The environment variable Airflow reads a connection from: ``AIRFLOW_CONN_<ID upper-cased>``."""
    return f"AIRFLOW_CONN_{connection_id.upper()}"


def get_connection(connection_id: str) -> Any:
    """The Airflow connection ``connection_id``, or a DestinationError saying how to define it."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.sdk import BaseHook

    if not _CONN_ID.match(connection_id):
        raise DestinationError(f"connection id {connection_id!r} is not a valid Airflow connection id "
                               "(letters, digits, '_', '.', '-')")
    try:
        return BaseHook.get_connection(connection_id)
    except AirflowNotFoundException:
        raise DestinationError(
            f"Airflow connection '{connection_id}' is not defined: create it (Admin > Connections, a secrets "
            f"backend, or the environment variable {env_var_name(connection_id)} on the worker)") from None


def connection_env(connection_ids: Iterable[str]) -> dict[str, str]:
    """The ``AIRFLOW_CONN_*`` variables (JSON form) that let a subprocess resolve these connections.

    Call it inside the Airflow task; merge the result into the subprocess environment (e.g. the
    SparkSubmitOperator's ``env_vars``), never into a command line. The passwords and keys are also
    registered with Airflow's secrets masker so that they never reach a task log.
    """
    from airflow.sdk.log import mask_secret

    env: dict[str, str] = {}
    for connection_id in sorted(set(connection_ids)):
        conn = get_connection(connection_id)
        value = conn.as_json()
        if conn.password:
            mask_secret(conn.password)
        mask_secret(value)
        env[env_var_name(connection_id)] = value
    return env
