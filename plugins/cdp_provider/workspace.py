"""The workspace as Airflow tasks see it: loaded on the worker at run time, never at DAG parse time."""

from __future__ import annotations

from airflow.exceptions import AirflowFailException

from cdp.errors import WorkspaceError
from cdp.settings import Settings
from cdp.workspace.loader import Workspace, load_workspace


def checked_workspace() -> Workspace:
    """The workspace of ``CDP_WORKSPACE``; a broken one fails the task at once (a retry cannot fix YAML)."""
    try:
        return load_workspace(Settings.from_env().workspace)
    except WorkspaceError as exc:
        raise AirflowFailException(str(exc)) from exc
