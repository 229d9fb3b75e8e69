"""The ``kafka`` sender: confluent-kafka's idempotent producer, ``acks=all``, key = profile id.

The connection's host holds the bootstrap servers (``host:port[,host:port]``; the connection's port is
appended to a single host without one). For SASL (Azure Event Hubs' Kafka endpoint: ``security_protocol:
SASL_SSL``, ``sasl_mechanism: PLAIN``, login ``$ConnectionString``, password the namespace's connection
string) the extra names the protocol and mechanism and the login / password are the SASL user and
secret; ``ssl_ca_pem`` (extra) overrides the system's certificate store. A batch is produced, then
flushed: each message is acknowledged by its delivery report; a retriable error (the broker was away
longer than the producer's own retries) is retried by the caller with the same message id.
"""

from __future__ import annotations

from typing import Any

from cdp.destinations.streaming.delivery import Message, Outcome, Problem, truncate
from cdp.destinations.streaming.endpoint import ConnectionInfo
from cdp.errors import DestinationError
from cdp.workspace.models import KafkaDestination


def producer_config(dest: KafkaDestination, conn: ConnectionInfo, timeout: float) -> dict[str, Any]:
    """librdkafka settings of the destination's producer (secrets from the connection only)."""
    servers = (conn.host or "").strip()
    if not servers:
        raise DestinationError(f"Airflow connection '{conn.conn_id}' has no host: set it to the bootstrap servers "
                               "(host:port, comma-separated)")
    if conn.port and "," not in servers and ":" not in servers:
        servers = f"{servers}:{conn.port}"
    config: dict[str, Any] = {
        "bootstrap.servers": servers,
        "enable.idempotence": True,  # with acks=all: no duplicate and no reordering from the producer's retries
        "acks": "all",
        "compression.type": dest.compression,
        "linger.ms": 5,
        "message.timeout.ms": int(timeout * 1000),
        "socket.timeout.ms": max(1000, int(timeout * 1000)),
        "client.id": f"cdp-{dest.name}",
    }
    protocol = conn.extra.get("security_protocol")
    if protocol:
        config["security.protocol"] = str(protocol)
    if conn.extra.get("sasl_mechanism"):
        config["sasl.mechanism"] = str(conn.extra["sasl_mechanism"])
        config["sasl.username"] = conn.login or ""
        config["sasl.password"] = conn.password or ""
    if conn.extra.get("ssl_ca_pem"):
        config["ssl.ca.pem"] = str(conn.extra["ssl_ca_pem"])
    return config


class KafkaSender:
    """Produces into one topic; open one per partition."""

    def __init__(self, dest: KafkaDestination, conn: ConnectionInfo, timeout: float = 30.0) -> None:
        from confluent_kafka import Producer

        self.dest = dest
        self.conn = conn
        self.timeout = timeout
        self.producer = Producer(producer_config(dest, conn, timeout))

    def send(self, batch: list[Message], idempotency_key: str) -> Outcome:
        """Produce every message, flush, and sort the delivery reports."""
        from confluent_kafka import KafkaError, KafkaException

        outcome = Outcome()
        reported: set[str] = set()

        def report(m: Message) -> Any:
            def callback(err: Any, _msg: Any) -> None:
                reported.add(m.message_id)
                if err is None:
                    outcome.acknowledged.append(m)
                else:
                    retryable = bool(err.retriable()) or err.code() in (KafkaError._MSG_TIMED_OUT,
                                                                        KafkaError._TRANSPORT)
                    outcome.problems.append((m, Problem(f"kafka_{err.name()}", retryable,
                                                        response=truncate(err.str(), self.conn.secrets()))))
            return callback

        for m in batch:
            while True:
                try:
                    self.producer.produce(self.dest.topic, value=m.payload, key=m.profile_id.encode("utf-8"),
                                          headers=[("message_id", m.message_id.encode("ascii"))], on_delivery=report(m))
                    break
                except BufferError:
                    self.producer.poll(0.1)  # the local queue is full: let deliveries drain
                except KafkaException as exc:
                    err = exc.args[0]
                    outcome.problems.append((m, Problem(f"kafka_{err.name()}", bool(err.retriable()),
                                                        response=truncate(err.str(), self.conn.secrets()))))
                    reported.add(m.message_id)
                    break
        self.producer.flush(self.timeout + 5)
        missing = [m for m in batch if m.message_id not in reported]
        outcome.problems += [(m, Problem("timeout", True)) for m in missing]
        return outcome

    def close(self) -> None:
        self.producer.flush(self.timeout)
