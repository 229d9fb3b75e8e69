"""One exception hierarchy, with messages a data engineer can act on."""

from __future__ import annotations

from dataclasses import dataclass


class CdpError(Exception):
    """Base class of every error the platform raises on purpose.

    ``retryable`` says whether running the same task again may succeed: False for errors the same inputs
    raise again (a broken workspace, a rejected batch, a failed quality gate), which fail the task at
    once; True for errors of the environment (a landing zone or destination that did not answer).
    """

    retryable = False


@dataclass(frozen=True)
class WorkspaceProblem:
    """One problem found in a workspace: the file, the key inside it and what is wrong."""

    file: str
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.key}" if self.key else self.file
        return f"{where}: {self.message}"


class WorkspaceError(CdpError):
    """The workspace configuration is invalid; carries every problem found, not only the first."""

    def __init__(self, problems: list[WorkspaceProblem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"workspace has {len(problems)} problem(s):\n{lines}")


class BatchRejectedError(CdpError):
    """A landed batch rejected more records than the configured threshold allows."""


class DataQualityError(CdpError):
    """A Great Expectations check failed; the run must not go on to the next step."""


class LandingError(CdpError):
    """Landed files could not be listed or read."""

    retryable = True


class S3ConnectorMissingError(LandingError):
    """Files landed on S3 but the Spark session started without Hadoop's S3A connector: only a session started with
    it can read them in place, so a retry on the same session fails the same way (restart it, then clear the task)."""

    retryable = False


class StepNotReadyError(CdpError):
    """A step's inputs are not committed for the run date (a step before it did not run, or did not finish)."""


class DestinationError(CdpError):
    """A file destination (S3, Azure Blob, GCS, SFTP, local folder) refused or failed a transfer.

    The message names the target location and what to do; it never holds a credential. Retryable: the
    transports already retried transient failures; a later attempt (or the next run) may find the target
    back, and files already delivered are not sent again.
    """

    retryable = True


class SparkConnectServerError(CdpError):
    """The loopback Spark Connect server (cdp/spark_connect.py) could not be started or reached."""

    retryable = True


class PolicyViolationError(CdpError):
    """A destination would send data that a usage policy of the workspace forbids for its marketing actions
    (``cdp.governance.policies``); raised at run time before anything is sent. The same inputs raise it again."""


class LakeFilesError(CdpError):
    """A plain file under the lake root (an export's staged parts) could not be listed, fetched or removed
    (``cdp.lake_files``: local folders and ``s3a://``). Retryable: the store may be back on the next attempt."""

    retryable = True
