"""Airflow connections for the transports: resolved through the hooks, handed to the Spark job by environment.

In the Airflow task the connections come from wherever Airflow keeps them (metadata DB, a secrets
backend, ``AIRFLOW_CONN_*``). The export job runs as a ``spark-submit`` subprocess of the task, with
no task context: there the hooks' ``BaseHook.get_connection`` finds them in ``AIRFLOW_CONN_<ID>``
environment variables (JSON), which :func:`connection_env` produces in the task for the operator to
pass in the subprocess environment, never on its command line.
"""

from __future__ import annotations

import os
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


# ---------------------------------------------------------------- the lake's own store (issue 13: lake on S3)
LAKE_CONNECTION_ENV = "CDP_LAKE_CONNECTION"


def lake_store_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The lake store's credentials and endpoint as environment variables, from the Airflow ``aws`` connection
    named by ``CDP_LAKE_CONNECTION`` (none when it is not set: then the environment or the machine's role
    provides them, as S3A, boto3 and delta-rs read them).

    ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (login / password, or the extra's ``aws_access_key_id`` /
    ``aws_secret_access_key``), ``AWS_SESSION_TOKEN``, ``AWS_REGION`` (extra ``region_name``) and
    ``CDP_S3_ENDPOINT`` (extra ``endpoint_url``). Resolve it in the Airflow task or where the Spark Connect server
    starts, and hand it to the process environment: never a command line. The secrets are masked in task logs.
    """
    env = dict(os.environ) if env is None else env
    connection_id = env.get(LAKE_CONNECTION_ENV, "").strip()
    if not connection_id:
        return {}
    conn = get_connection(connection_id)
    extra = conn.extra_dejson if isinstance(conn.extra_dejson, dict) else {}
    values = {
        "AWS_ACCESS_KEY_ID": conn.login or extra.get("aws_access_key_id"),
        "AWS_SECRET_ACCESS_KEY": conn.password or extra.get("aws_secret_access_key"),
        "AWS_SESSION_TOKEN": extra.get("aws_session_token"),
        "AWS_REGION": extra.get("region_name"),
        "CDP_S3_ENDPOINT": extra.get("endpoint_url"),
    }
    out = {k: str(v) for k, v in values.items() if v}
    from airflow.sdk.log import mask_secret

    for key in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        if key in out:
            mask_secret(out[key])
    return out
