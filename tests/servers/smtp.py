"""A real SMTP server on 127.0.0.1 (aiosmtpd) that keeps every message it accepted, for the alert tests."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from cdp.spark_connect import free_port


@dataclass
class Received:
    """One accepted message: the envelope and the parsed message."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


@dataclass
class SmtpServer:
    """The running server: its port and what it received (``logins``: the accepted logins)."""

    port: int
    messages: list[Received] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)


class _Handler:
    def __init__(self, state: SmtpServer) -> None:
        self.state = state

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.state.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 OK"


@contextmanager
def smtp_server(login: str, password: str) -> Iterator[SmtpServer]:
    """Run an SMTP server on a free loopback port that accepts only ``login`` / ``password`` (AUTH over plain
    text: loopback only), until the block ends."""
    state = SmtpServer(port=free_port())

    def authenticate(_server: Any, _session: Any, _envelope: Any, _mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login.decode() == login and data.password.decode() == password
        if ok:
            state.logins.append(login)
        return AuthResult(success=ok)

    controller = Controller(_Handler(state), hostname="127.0.0.1", port=state.port, authenticator=authenticate,
                            auth_require_tls=False, auth_required=True)
    controller.start()
    try:
        yield state
    finally:
        controller.stop()
