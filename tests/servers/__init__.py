"""Real servers on loopback for tests and the demo (see processes.py), and a fault-injecting proxy."""

from __future__ import annotations

from servers.fault_proxy import FaultProxy
from servers.processes import SERVERS, AzuriteServer, FakeGcsServer, MotoServer, Server, SshdServer, free_port

__all__ = ["SERVERS", "AzuriteServer", "FakeGcsServer", "FaultProxy", "MotoServer", "Server", "SshdServer",
           "free_port"]
