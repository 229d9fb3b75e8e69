"""The ``kinesis`` sender: boto3 ``PutRecords`` (at most 500 records per call), partition key = profile id.

The connection is an AWS one: access key id / secret as login / password (else boto3's default chain),
``region_name`` and an optional ``endpoint_url`` in the extra. A record the stream refuses inside an
accepted call (``ProvisionedThroughputExceededException``, ``InternalFailure``) is retried; boto3's own
retries are off so that the one retry budget of the destination applies.
"""

from __future__ import annotations

from typing import Any

from cdp.destinations.streaming.delivery import Message, Outcome, Problem, truncate
from cdp.destinations.streaming.endpoint import ConnectionInfo
from cdp.workspace.models import KinesisDestination

MAX_RECORDS = 500
RETRYABLE_RECORD_ERRORS = frozenset({"ProvisionedThroughputExceededException", "InternalFailure"})
RETRYABLE_CALL_ERRORS = frozenset({"ProvisionedThroughputExceededException", "LimitExceededException",
                                   "ThrottlingException", "InternalFailure", "ServiceUnavailable",
                                   "InternalServerError", "KMSThrottlingException"})


class KinesisSender:
    """PutRecords into one stream; open one per partition."""

    def __init__(self, dest: KinesisDestination, conn: ConnectionInfo, timeout: float = 10.0) -> None:
        import boto3
        from botocore.config import Config

        self.dest = dest
        self.conn = conn
        config = Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=timeout,
                        read_timeout=timeout)
        self.client: Any = boto3.client(
            "kinesis", region_name=conn.extra.get("region_name") or "us-east-1",
            endpoint_url=conn.extra.get("endpoint_url") or None, aws_access_key_id=conn.login or None,
            aws_secret_access_key=conn.password or None, config=config)

    def send(self, batch: list[Message], idempotency_key: str) -> Outcome:
        """One PutRecords call per 500 messages; each record acknowledged or failed on its own."""
        from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, ReadTimeoutError

        outcome = Outcome()
        for start in range(0, len(batch), MAX_RECORDS):
            chunk = batch[start:start + MAX_RECORDS]
            try:
                answer = self.client.put_records(StreamName=self.dest.stream, Records=[
                    {"Data": m.payload, "PartitionKey": m.profile_id} for m in chunk])
            except ReadTimeoutError:
                outcome.problems += [(m, Problem("timeout", True)) for m in chunk]
                continue
            except ConnectionError:
                outcome.problems += [(m, Problem("connection_error", True)) for m in chunk]
                continue
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", "ClientError"))
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                retryable = code in RETRYABLE_CALL_ERRORS or (isinstance(status, int) and status >= 500)
                problem = Problem(f"kinesis_{code}", retryable, status, truncate(str(exc), self.conn.secrets()),
                                  about_records=False)
                outcome.problems += [(m, problem) for m in chunk]
                continue
            except BotoCoreError as exc:
                outcome.problems += [(m, Problem("connection_error", True, response=type(exc).__name__))
                                     for m in chunk]
                continue
            for m, record in zip(chunk, answer["Records"], strict=True):
                code = record.get("ErrorCode")
                if not code:
                    outcome.acknowledged.append(m)
                else:
                    outcome.problems.append((m, Problem(f"kinesis_{code}", code in RETRYABLE_RECORD_ERRORS,
                                                        response=truncate(record.get("ErrorMessage")))))
        return outcome

    def close(self) -> None:
        self.client.close()
