"""How a streaming destination's Airflow connection becomes client settings: the Kafka producer's librdkafka
configuration (Azure Event Hubs' SASL_SSL endpoint included) and the HTTP base URL, and what counts as a secret."""

from __future__ import annotations

from cdp.destinations.streaming.endpoint import ConnectionInfo
from cdp.destinations.streaming.http import base_url
from cdp.destinations.streaming.kafka import producer_config
from cdp.workspace.models import KafkaDestination

EVENT_HUBS = "Endpoint=sb://cdp.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=k3y"


def kafka(**keys: object) -> KafkaDestination:
    return KafkaDestination.model_validate({"name": "bus", "type": "kafka", "connection": "bus", "topic": "profiles",
                                            "audiences": ["gold_members"], "mapping": [{"source": "profile_id"}],
                                            **keys})


def test_event_hubs_kafka_endpoint() -> None:
    conn = ConnectionInfo("bus", "kafka", "cdp.servicebus.windows.net", port=9093, login="$ConnectionString",
                          password=EVENT_HUBS, extra={"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN"})
    assert producer_config(kafka(compression="lz4"), conn, timeout=30.0) == {
        "bootstrap.servers": "cdp.servicebus.windows.net:9093", "enable.idempotence": True, "acks": "all",
        "compression.type": "lz4", "linger.ms": 5, "message.timeout.ms": 30000, "socket.timeout.ms": 30000,
        "client.id": "cdp-bus", "security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN",
        "sasl.username": "$ConnectionString", "sasl.password": EVENT_HUBS}
    assert conn.secrets() == [EVENT_HUBS]
    assert EVENT_HUBS not in repr(conn)


def test_plaintext_brokers_keep_their_ports() -> None:
    conn = ConnectionInfo("bus", "kafka", "b1:9092,b2:9092", port=9999)
    assert producer_config(kafka(), conn, timeout=2.0)["bootstrap.servers"] == "b1:9092,b2:9092"


def test_http_base_url_like_airflows_http_hook() -> None:
    assert base_url(ConnectionInfo("c", "http", "api.example.com", schema="https", port=8443)) == (
        "https://api.example.com:8443")
    assert base_url(ConnectionInfo("c", "http", "http://127.0.0.1:80/")) == "http://127.0.0.1:80"
    assert base_url(ConnectionInfo("c", "http", "api.example.com")) == "https://api.example.com"
    secrets = ConnectionInfo("c", "http", "h", password="p4ss", extra={"client_secret": "cs", "token_url": "u"})
    assert secrets.secrets() == ["p4ss", "cs"]
