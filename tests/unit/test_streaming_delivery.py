"""The delivery loop's arithmetic: batches, backoff with Retry-After, splitting a refused batch, the rate limit.

The senders themselves run against real endpoints in tests/integration/test_streaming_*.py. Here a scripted
sender stands in for the endpoint (it answers from a list), because what is checked is the exact sequence
of attempts and waits, which a real server cannot make deterministic; waits are recorded, never slept.
"""

from __future__ import annotations

import hashlib

from cdp.destinations.streaming.delivery import (
    DELIVERED,
    FAILED,
    DeliveryPolicy,
    Message,
    Outcome,
    Problem,
    RateLimiter,
    backoff,
    batches,
    deliver_batch,
    idempotency_key,
    truncate,
)
from cdp.destinations.streaming.http import retry_after_seconds


def msg(i: int) -> Message:
    return Message(f"{i:064x}", f"p{i}", b"{}")


class ScriptedEndpoint:
    """Answers each send with the next scripted reply: 'ok', a Problem for all, or a set of refused profile ids."""

    def __init__(self, replies: list[object]) -> None:
        self.replies = list(replies)
        self.sent: list[tuple[list[str], str]] = []

    def send(self, batch: list[Message], key: str) -> Outcome:
        self.sent.append(([m.profile_id for m in batch], key))
        reply = self.replies.pop(0) if self.replies else "ok"
        if reply == "ok":
            return Outcome.all_acknowledged(batch)
        if isinstance(reply, Problem):
            return Outcome.all_failed(batch, reply)
        assert isinstance(reply, set)
        bad = [m for m in batch if m.profile_id in reply]
        if bad:
            return Outcome.all_failed(batch, Problem("http_400", False, 400, "bad record"))
        return Outcome.all_acknowledged(batch)

    def close(self) -> None:
        pass


POLICY = DeliveryPolicy(max_messages=4, attempts=4, initial_wait=0.5, max_wait=8.0)


def test_retries_wait_exponentially_with_jitter_and_honour_retry_after() -> None:
    endpoint = ScriptedEndpoint([Problem("http_429", True, 429, retry_after=3.0), Problem("http_503", True, 503),
                                 Problem("timeout", True), "ok"])
    waits: list[float] = []
    results = deliver_batch(endpoint, [msg(1), msg(2)], POLICY, sleep=waits.append, rand=lambda: 1.0,
                            clock=lambda: 100.0)
    # Full jitter at its top (rand 1.0): 0.5, 1, 2 s; the first wait is Retry-After's 3 s instead.
    assert waits == [3.0, 1.0, 2.0]
    assert [(r.message.profile_id, r.status, r.attempts, r.acknowledged_at) for r in results] == [
        ("p1", DELIVERED, 4, 100.0), ("p2", DELIVERED, 4, 100.0)]
    # Every attempt of the batch carries the same idempotency key.
    assert {key for _, key in endpoint.sent} == {idempotency_key([msg(1), msg(2)])}


def test_a_refused_batch_is_halved_until_the_refused_record_is_alone() -> None:
    endpoint = ScriptedEndpoint([{"p3"}, {"p3"}, {"p3"}, {"p3"}, {"p3"}])
    results = deliver_batch(endpoint, [msg(1), msg(2), msg(3), msg(4)], POLICY, sleep=lambda _s: None)
    assert [ids for ids, _ in endpoint.sent] == [["p1", "p2", "p3", "p4"], ["p1", "p2"], ["p3", "p4"], ["p3"], ["p4"]]
    assert sorted((r.message.profile_id, r.status) for r in results) == [
        ("p1", DELIVERED), ("p2", DELIVERED), ("p3", FAILED), ("p4", DELIVERED)]
    failed = next(r for r in results if r.status == FAILED)
    assert failed.problem == Problem("http_400", False, 400, "bad record")


def test_out_of_attempts_is_a_failure_with_the_last_error_class() -> None:
    endpoint = ScriptedEndpoint([Problem("connection_error", True)] * 4)
    waits: list[float] = []
    results = deliver_batch(endpoint, [msg(1)], POLICY, sleep=waits.append, rand=lambda: 0.5)
    assert len(endpoint.sent) == 4 and waits == [0.25, 0.5, 1.0]
    assert [(r.status, r.attempts, r.problem.error_class if r.problem else None) for r in results] == [
        (FAILED, 4, "connection_error")]


def test_a_refusal_about_the_request_is_not_split() -> None:
    endpoint = ScriptedEndpoint([Problem("http_401", False, 401, about_records=False)])
    results = deliver_batch(endpoint, [msg(1), msg(2)], POLICY, sleep=lambda _s: None)
    assert len(endpoint.sent) == 1
    assert [(r.message.profile_id, r.status) for r in results] == [("p1", FAILED), ("p2", FAILED)]


def test_backoff_caps_retry_after_and_the_exponential() -> None:
    policy = DeliveryPolicy(initial_wait=1.0, max_wait=5.0)
    assert backoff(10, policy, None, lambda: 1.0) == 5.0
    assert backoff(1, policy, 60.0, lambda: 0.0) == 5.0


def test_batches_of_max_messages_or_max_seconds() -> None:
    ticks = iter([0.0, 0.0, 0.1, 0.2, 0.3, 5.0, 5.0, 5.1, 5.2, 5.3])
    policy = DeliveryPolicy(max_messages=3, max_seconds=2.0)
    got = [[m.profile_id for m in b] for b in batches([msg(i) for i in range(1, 7)], policy, clock=lambda: next(ticks))]
    # [p1, p2, p3] is full; p4 starts at 0.3, p5 comes at 5.0 (over 2 s): sent; then p6 alone at the end.
    assert got == [["p1", "p2", "p3"], ["p4", "p5"], ["p6"]]


def test_rate_limiter_spaces_messages() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))
        now[0] += seconds

    limiter = RateLimiter(10.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        limiter.acquire(10)  # one second's worth each time
    assert slept == [1.0, 1.0]  # the first burst is free, each next one waits a second
    assert now[0] == 2.0


def test_retry_after_and_truncation() -> None:
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: at once
    assert truncate("token=s3cr3t " + "x" * 600, ["s3cr3t"]) == ("token=*** " + "x" * 600)[:499] + "…"
    assert hashlib.sha256(b"a,b,").hexdigest() == idempotency_key([Message("a", "p", b""), Message("b", "q", b"")])
