"""Real endpoints on 127.0.0.1 for the streaming-destination tests and the demo: the HTTP receiver with fault
injection (``http_receiver.py``) and one Apache Kafka broker in KRaft mode from the jars setup put in
``.cache/kafka/libs``. Kinesis is moto's server (:class:`servers.processes.MotoServer`), which speaks
Kinesis as well as S3.
"""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from servers.processes import REPO_ROOT, Server, free_port, wait_for_port

KAFKA_LIBS = REPO_ROOT / ".cache" / "kafka" / "libs"
RECEIVER = Path(__file__).resolve().parent / "http_receiver.py"


class HttpReceiver(Server):
    """The fault-injecting HTTP API (see ``http_receiver.py``); :meth:`control` drives it."""

    name = "http-receiver"
    context: ssl.SSLContext | None = None  # how the test itself reaches a TLS receiver

    def command(self) -> list[str]:
        return [sys.executable, str(RECEIVER), str(self.port)]

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                self.requests()
                return
            except OSError:
                if time.monotonic() > deadline or (self.process is not None and self.process.poll() is not None):
                    raise RuntimeError(f"{self.name} did not answer on {self.url}") from None
                time.sleep(0.1)

    def _open(self, request: urllib.request.Request | str) -> Any:
        return urllib.request.urlopen(request, timeout=10, context=self.context)

    def control(self, what: str, body: Any = None) -> Any:
        """POST to ``/_control/<what>`` (reset, auth, faults) and return the parsed answer."""
        request = urllib.request.Request(f"{self.url}/_control/{what}", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with self._open(request) as answer:
            return json.loads(answer.read())

    def requests(self) -> list[dict[str, Any]]:
        """Every API request the receiver read, in arrival order."""
        with self._open(f"{self.url}/_control/requests") as answer:
            return list(json.loads(answer.read())["requests"])

    def accepted(self) -> int:
        """How many messages the receiver accepted (answered 200), recorded or only counted."""
        with self._open(f"{self.url}/_control/requests") as answer:
            return int(json.loads(answer.read())["accepted"])

    def token_requests(self) -> int:
        with self._open(f"{self.url}/_control/requests") as answer:
            return int(json.loads(answer.read())["token_requests"])

    def messages(self) -> list[dict[str, Any]]:
        """Every message of the requests answered 200, in arrival order (duplicates included)."""
        return [m for r in self.requests() if r["status"] == 200 for m in r["messages"]]

    def connection(self) -> dict[str, Any]:
        return self.connection_via(self.port)

    def connection_via(self, port: int) -> dict[str, Any]:
        return {"conn_type": "http", "host": f"http://127.0.0.1:{port}"}


class TlsHttpReceiver(HttpReceiver):
    """The receiver over HTTPS with a certificate of a test CA for 127.0.0.1, requiring a client certificate of
    the same CA (mutual TLS). :attr:`pems` holds the CA, client certificate and client key (PEM)."""

    name = "https-receiver"

    def prepare(self) -> None:
        self.pems = make_test_pki(self.folder)
        self.context = ssl.create_default_context(cafile=str(self.folder / "ca.pem"))
        self.context.load_cert_chain(str(self.folder / "client.pem"), str(self.folder / "client.key"))

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, str(RECEIVER), str(self.port), "--tls", str(self.folder / "server.pem"),
                str(self.folder / "server.key"), "--client-ca", str(self.folder / "ca.pem")]

    def connection_via(self, port: int) -> dict[str, Any]:
        return {"conn_type": "http", "host": f"https://127.0.0.1:{port}"}


def make_test_pki(folder: Path) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, written as PEM files in ``folder``."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    def key_pem(key: ec.EllipticCurvePrivateKey) -> str:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()).decode()

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("cdp test CA")).issuer_name(name("cdp test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))

    def leaf(common: str, usage: x509.ObjectIdentifier, san: x509.GeneralName | None) -> tuple[str, str]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(name(common)).issuer_name(ca.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if san is not None:
            builder = builder.add_extension(x509.SubjectAlternativeName([san]), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem(key)

    server_pem, server_key = leaf("127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH,
                                  x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    client_pem, client_key = leaf("cdp-client", ExtendedKeyUsageOID.CLIENT_AUTH, None)
    pems = {"ca.pem": ca.public_bytes(serialization.Encoding.PEM).decode(), "server.pem": server_pem,
            "server.key": server_key, "client.pem": client_pem, "client.key": client_key}
    for file_name, text in pems.items():
        (folder / file_name).write_text(text)
    return pems


class KafkaBroker(Server):
    """One Apache Kafka broker and controller (KRaft, single node), PLAINTEXT on a loopback port.

    ``sasl_users`` (user -> password): the client listener is SASL_SSL with the PLAIN mechanism instead, as
    Azure Event Hubs' Kafka endpoint is (its TLS certificate from :func:`make_test_pki`, for 127.0.0.1).
    """

    name = "kafka"
    BROKER_USER = "broker"

    def __init__(self, folder: str | None = None, port: int | None = None,
                 sasl_users: dict[str, str] | None = None) -> None:
        super().__init__(folder, port)
        self.controller_port = free_port()
        self.sasl_users = sasl_users
        self.broker_secret = uuid.uuid4().hex
        self.pems: dict[str, str] = {}

    def client_config(self) -> dict[str, Any]:
        """librdkafka settings the test's own admin client and consumers reach the broker with."""
        config: dict[str, Any] = {"bootstrap.servers": self.bootstrap}
        if self.sasl_users:
            config.update({"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN",
                           "ssl.ca.pem": self.pems["ca.pem"], "sasl.username": self.BROKER_USER,
                           "sasl.password": self.broker_secret})
        return config

    def _java(self) -> list[str]:
        java = shutil.which("java")
        if java is None or not KAFKA_LIBS.is_dir():
            raise RuntimeError(f"Kafka needs java and its jars in {KAFKA_LIBS}: run `make setup`")
        return [java, "-Xms128m", "-Xmx512m", "-XX:+UseSerialGC",
                f"-Dlog4j2.configurationFile={self.folder}/log4j2.xml", "-cp", f"{KAFKA_LIBS}/*"]

    def prepare(self) -> None:
        props = {
            "process.roles": "broker,controller", "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.folder / "data"), "num.partitions": "2",
            "offsets.topic.replication.factor": "1", "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1", "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
        }
        if self.sasl_users:
            self.pems = make_test_pki(self.folder)
            (self.folder / "keystore.pem").write_text(self.pems["server.key"] + self.pems["server.pem"])
            users = {self.BROKER_USER: self.broker_secret, **self.sasl_users}
            jaas = ("org.apache.kafka.common.security.plain.PlainLoginModule required "
                    f'username="{self.BROKER_USER}" password="{self.broker_secret}" '
                    + " ".join(f'user_{u}="{pw}"' for u, pw in users.items()) + ";")
            props.update({
                "listeners": f"SASL_SSL://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
                "advertised.listeners": f"SASL_SSL://127.0.0.1:{self.port}",
                "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
                "inter.broker.listener.name": "SASL_SSL",
                "sasl.enabled.mechanisms": "PLAIN", "sasl.mechanism.inter.broker.protocol": "PLAIN",
                "listener.name.sasl_ssl.plain.sasl.jaas.config": jaas,
                "ssl.keystore.type": "PEM", "ssl.keystore.location": str(self.folder / "keystore.pem"),
                "ssl.truststore.type": "PEM", "ssl.truststore.location": str(self.folder / "ca.pem"),
                "ssl.endpoint.identification.algorithm": "",
            })
        (self.folder / "server.properties").write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.folder / "log4j2.xml").write_text(
            '<Configuration status="warn"><Appenders><Console name="c" target="SYSTEM_OUT"><PatternLayout '
            'pattern="%d %p %c - %m%n"/></Console></Appenders><Loggers><Root level="warn"><AppenderRef ref="c"/>'
            "</Root></Loggers></Configuration>")
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        import subprocess

        subprocess.run([*self._java(), "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c",
                        str(self.folder / "server.properties")], check=True, capture_output=True, timeout=120)

    def command(self) -> list[str]:
        return [*self._java(), "kafka.Kafka", str(self.folder / "server.properties")]

    def wait_ready(self) -> None:
        wait_for_port(self.port, self.process, self.name, timeout=120)
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(self.client_config())
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                admin.list_topics(timeout=5)
                return
            except Exception:
                time.sleep(0.5)
        raise RuntimeError("Kafka did not answer metadata requests within 120s")

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def create_topic(self, topic: str, partitions: int = 2) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient(self.client_config())
        for future in admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)]).values():
            future.result(30)

    def count(self, topic: str) -> int:
        """How many records the topic holds: the sum of its partitions' high watermarks (no transactions here,
        so no control records are counted)."""
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({**self.client_config(), "group.id": f"count-{uuid.uuid4().hex}"})
        try:
            partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
            return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in partitions)
        finally:
            consumer.close()

    def consume(self, topic: str, expected: int, timeout: float = 60.0) -> list[tuple[bytes, bytes, dict[str, bytes]]]:
        """(key, value, headers) of the topic's records from the beginning, until ``expected`` arrived."""
        from confluent_kafka import Consumer

        consumer = Consumer({**self.client_config(), "group.id": f"test-{uuid.uuid4().hex}",
                             "auto.offset.reset": "earliest", "enable.auto.commit": False})
        consumer.subscribe([topic])
        out: list[tuple[bytes, bytes, dict[str, bytes]]] = []
        deadline = time.monotonic() + timeout
        try:
            while len(out) < expected and time.monotonic() < deadline:
                msg = consumer.poll(0.5)
                if msg is None or msg.error():
                    continue
                out.append((msg.key(), msg.value(), dict(msg.headers() or [])))
            # Anything beyond what was expected (a duplicate) arrives with it: read a little longer.
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                msg = consumer.poll(0.2)
                if msg is not None and not msg.error():
                    out.append((msg.key(), msg.value(), dict(msg.headers() or [])))
        finally:
            consumer.close()
        return out

    def connection(self) -> dict[str, Any]:
        return self.connection_via(self.port)

    def connection_via(self, port: int) -> dict[str, Any]:
        return {"conn_type": "kafka", "host": f"127.0.0.1:{port}"}

    def sasl_connection(self, user: str, password: str) -> dict[str, Any]:
        """An Airflow connection as one for Event Hubs' Kafka endpoint is written, to this SASL_SSL broker."""
        return {"conn_type": "kafka", "host": self.bootstrap, "login": user, "password": password,
                "extra": {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN",
                          "ssl_ca_pem": self.pems["ca.pem"]}}
