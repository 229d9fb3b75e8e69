"""The http sender's auth, headers and gzip against the real HTTP receiver on loopback (no Spark needed):
bearer tokens, OAuth2 client credentials with a cached token refreshed when the API says 401, the password
grant, custom headers, the idempotency key header and gzip request bodies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from servers.streaming import HttpReceiver, TlsHttpReceiver

from cdp.destinations.streaming import http
from cdp.destinations.streaming.delivery import Message, Problem, idempotency_key
from cdp.destinations.streaming.endpoint import ConnectionInfo
from cdp.workspace.models import HttpDestination

SECRET = "s3cr3t-client-Zq8w"


def destination(**keys: Any) -> HttpDestination:
    return HttpDestination.model_validate({"name": "crm_api", "type": "http", "connection": "crm_api",
                                           "audiences": ["gold_members"], "path": "/in",
                                           "mapping": [{"source": "profile_id"}], **keys})


def batch(*ids: str) -> list[Message]:
    return [Message(f"{i:0>64}", f"p{i}", json.dumps({"messageId": f"{i:0>64}", "profileId": f"p{i}"}).encode())
            for i in ids]


def conn(receiver: HttpReceiver, **keys: Any) -> ConnectionInfo:
    return ConnectionInfo("crm_api", "http", receiver.connection()["host"], **keys)


@pytest.fixture()
def receiver(http_receiver: HttpReceiver) -> HttpReceiver:
    http_receiver.control("reset")
    http._TOKENS.clear()  # the executor-wide token cache: each test starts without a token
    return http_receiver


def test_bearer_token_custom_headers_and_gzip(receiver: HttpReceiver) -> None:
    receiver.control("auth", {"mode": "bearer", "token": SECRET})
    sender = http.HttpSender(destination(auth="bearer", gzip=True, headers={"X-Team": "crm"},
                                         idempotency_header="X-Batch-Id"), conn(receiver, password=SECRET))
    messages = batch("1", "2")
    outcome = sender.send(messages, idempotency_key(messages))
    sender.close()
    assert outcome.acknowledged == messages and outcome.problems == []
    [request] = receiver.requests()
    assert request["gzip"] is True and request["path"] == "/in"
    assert request["messages"] == [json.loads(m.payload) for m in messages]
    assert request["headers"]["x-team"] == "crm"
    assert request["headers"]["x-batch-id"] == idempotency_key(messages)
    assert request["headers"]["content-type"] == "application/json"

    wrong = http.HttpSender(destination(auth="bearer"), conn(receiver, password="not-the-token"))
    refused = wrong.send(batch("3"), "k")
    wrong.close()
    assert refused.problems == [(batch("3")[0], Problem("http_401", False, 401, '{"error": "bad bearer token"}',
                                                        None, about_records=False))]


def test_oauth2_client_credentials_token_cached_and_refreshed_on_401(receiver: HttpReceiver) -> None:
    receiver.control("auth", {"mode": "oauth2", "client_id": "cdp", "client_secret": SECRET, "expires_in": 3600})
    extra = {"token_url": f"{receiver.url}/oauth/token", "client_id": "cdp", "client_secret": SECRET}
    sender = http.HttpSender(destination(auth="oauth2_client_credentials"), conn(receiver, extra=extra))
    assert sender.send(batch("1"), "a").acknowledged == batch("1")
    assert sender.send(batch("2"), "b").acknowledged == batch("2")
    assert receiver.token_requests() == 1  # cached
    receiver.control("faults", [{"expire_tokens": True}])
    assert sender.send(batch("3"), "c").acknowledged == batch("3")  # 401, new token, sent again at once
    assert receiver.token_requests() == 2
    sender.close()
    statuses = [r["status"] for r in receiver.requests()]
    assert statuses == [200, 200, 200]  # the 401 answer is not an accepted request
    assert [r["messages"][0]["profileId"] for r in receiver.requests()] == ["p1", "p2", "p3"]


def test_oauth2_password_grant(receiver: HttpReceiver) -> None:
    receiver.control("auth", {"mode": "oauth2", "client_id": "cdp", "client_secret": SECRET, "username": "svc",
                              "password": "pw-1"})
    extra = {"token_url": f"{receiver.url}/oauth/token", "client_id": "cdp", "client_secret": SECRET}
    good = http.HttpSender(destination(auth="oauth2_password"), conn(receiver, login="svc", password="pw-1",
                                                                     extra=extra))
    assert good.send(batch("1"), "a").acknowledged == batch("1")
    good.close()
    http._TOKENS.clear()
    bad = http.HttpSender(destination(auth="oauth2_password"), conn(receiver, login="svc", password="wrong",
                                                                    extra=extra))
    outcome = bad.send(batch("2"), "b")
    bad.close()
    assert outcome.problems == [(batch("2")[0], Problem("oauth2_token_400", False, 400, '{"error": "invalid_grant"}',
                                                        about_records=False))]


def test_connection_without_host_names_the_connection() -> None:
    from cdp.errors import DestinationError

    with pytest.raises(DestinationError) as caught:
        http.HttpSender(destination(), ConnectionInfo("crm_api", "http", None))
    assert str(caught.value) == "Airflow connection 'crm_api' has no host: set it to the API's base URL"


def test_mutual_tls_with_verified_certificates(tmp_path: Path) -> None:
    with TlsHttpReceiver(folder=str(tmp_path / "tls")) as receiver:
        pems = receiver.pems  # type: ignore[attr-defined]
        extra = {"ca_cert": pems["ca.pem"], "client_cert": pems["client.pem"], "client_key": pems["client.key"]}
        sender = http.HttpSender(destination(mutual_tls=True), conn(receiver, extra=extra))
        assert sender.send(batch("1"), "a").acknowledged == batch("1")
        sender.close()
        assert [r["messages"][0]["profileId"] for r in receiver.requests()] == ["p1"]  # type: ignore[attr-defined]

        # The server's certificate is checked: without the CA that signed it, nothing is sent.
        untrusted = http.HttpSender(destination(mutual_tls=True), conn(receiver, extra={
            "client_cert": pems["client.pem"], "client_key": pems["client.key"]}))
        outcome = untrusted.send(batch("2"), "b")
        untrusted.close()
        assert [(m.profile_id, p.error_class, p.retryable) for m, p in outcome.problems] == [("p2", "tls_error", False)]

        # The server asks for a client certificate: without one the handshake is refused.
        anonymous = http.HttpSender(destination(), conn(receiver, extra={"ca_cert": pems["ca.pem"]}))
        refused = anonymous.send(batch("3"), "c")
        anonymous.close()
        # TLS 1.3 sends the server's refusal after the client's handshake: it surfaces as an SSL error, or as a
        # reset when the request was already on its way.
        assert refused.acknowledged == []
        assert [(m.profile_id, p.error_class in ("tls_error", "connection_error")) for m, p in refused.problems] == [
            ("p3", True)]
        assert [r["messages"][0]["profileId"] for r in receiver.requests()] == ["p1"]  # type: ignore[attr-defined]
        # The temporary PEM files of the senders are gone.
        assert not any(Path(p).exists() for p in sender._files)
