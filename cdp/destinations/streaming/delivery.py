"""Delivering messages in batches from one Spark partition: batching, rate limit, retries, acknowledgements.

A :class:`Sender` (HTTP, Kafka, Kinesis) sends one batch and says, per message, whether it was
acknowledged, rejected (not worth retrying: a 4xx other than 408 / 429, a record error) or failed in a way
a retry may fix (a network error, a timeout, 429, 5xx; with the ``Retry-After`` the endpoint asked for).
:func:`deliver_partition` drives it: batches of up to ``max_messages`` (or what is ready after
``max_seconds``), a token bucket for the rate limit, exponential backoff with full jitter between
attempts (never shorter than ``Retry-After``), and a rejected batch of several messages split in halves
until the rejected message is alone, so one bad record does not fail its neighbours. Every
acknowledgement is appended to the journal (``flush`` + ``fsync`` per batch) before the next batch is
sent, so a task killed mid-run loses at most the batch in flight.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Protocol

log = logging.getLogger(__name__)

DELIVERED = "delivered"
FAILED = "failed"
MAX_RESPONSE_CHARS = 500


@dataclass(frozen=True)
class Message:
    """One message to send: its id, the profile (Kafka key, Kinesis partition key) and the JSON payload;
    ``journal``: the JSON object (without bytes and acknowledgement time) the journal keeps of it once it is
    acknowledged (carried along, never sent)."""

    message_id: str
    profile_id: str
    payload: bytes
    journal: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Problem:
    """Why a message was not acknowledged: an error class (``http_400``, ``timeout``...), the HTTP status and
    the endpoint's answer (truncated by :func:`truncate`), and whether a retry may succeed."""

    error_class: str
    retryable: bool
    http_status: int | None = None
    response: str | None = None
    retry_after: float | None = None
    # False when the refusal cannot be about one record (401, 403, 404...): a refused batch is then not split.
    about_records: bool = True


@dataclass
class Outcome:
    """What one send of a batch gave: the messages acknowledged, and a problem per message that was not."""

    acknowledged: list[Message] = field(default_factory=list)
    problems: list[tuple[Message, Problem]] = field(default_factory=list)

    @classmethod
    def all_acknowledged(cls, batch: list[Message]) -> Outcome:
        return cls(acknowledged=list(batch))

    @classmethod
    def all_failed(cls, batch: list[Message], problem: Problem) -> Outcome:
        return cls(problems=[(m, problem) for m in batch])


class Sender(Protocol):
    """One endpoint's client, opened in an executor for one partition."""

    def send(self, batch: list[Message], idempotency_key: str) -> Outcome:
        """Send one batch once (no retries: the caller retries) and say what became of each message."""

    def close(self) -> None:
        """Release connections (flush a producer)."""


@dataclass(frozen=True)
class DeliveryPolicy:
    """Batching, rate limit and retry budget of one destination, as one partition applies them.

    ``rate_per_second``: this partition's share of the destination's limit (None: unlimited).
    """

    max_messages: int = 50
    max_seconds: float = 1.0
    rate_per_second: float | None = None
    attempts: int = 5
    initial_wait: float = 0.5
    max_wait: float = 30.0


@dataclass(slots=True)
class Result:
    """What became of one message: delivered (with when it was acknowledged) or failed (with its problem)."""

    message: Message
    status: str
    acknowledged_at: float | None
    attempts: int
    problem: Problem | None = None


def truncate(text: str | None, secrets: Iterable[str] = ()) -> str | None:
    """An endpoint's answer as it may be stored: the given secrets masked, at most MAX_RESPONSE_CHARS characters."""
    if text is None:
        return None
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text if len(text) <= MAX_RESPONSE_CHARS else text[: MAX_RESPONSE_CHARS - 1] + "…"


def idempotency_key(batch: list[Message]) -> str:
    """The key of a batch: SHA-256 of its message ids, so that a retry of the same batch repeats it."""
    return hashlib.sha256("".join(m.message_id + "," for m in batch).encode("ascii")).hexdigest()


def backoff(attempt: int, policy: DeliveryPolicy, retry_after: float | None, rand: Callable[[], float]) -> float:
    """Seconds to wait before attempt ``attempt + 1``: full jitter over an exponential cap, at least the
    endpoint's ``Retry-After`` (itself capped by ``max_wait``)."""
    cap = min(policy.max_wait, policy.initial_wait * (2 ** (attempt - 1)))
    wait = rand() * cap
    if retry_after is not None:
        wait = max(wait, min(retry_after, policy.max_wait))
    return wait


class RateLimiter:
    """A token bucket of ``rate`` messages per second (bursts up to one second's worth)."""

    def __init__(self, rate: float | None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self.tokens = float(rate or 0.0)
        self.updated = clock()

    def acquire(self, count: int) -> None:
        """Wait until ``count`` messages may go."""
        if self.rate is None:
            return
        while True:
            now = self.clock()
            self.tokens = min(max(self.rate, float(count)), self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            if self.tokens >= count:
                self.tokens -= count
                return
            self.sleep((count - self.tokens) / self.rate)


def batches(messages: Iterable[Message], policy: DeliveryPolicy,
            clock: Callable[[], float] = time.monotonic) -> Iterator[list[Message]]:
    """Groups of up to ``max_messages``, or what was ready ``max_seconds`` after a group's first message."""
    batch: list[Message] = []
    started = 0.0
    for m in messages:
        if not batch:
            started = clock()
        batch.append(m)
        if len(batch) >= policy.max_messages or clock() - started >= policy.max_seconds:
            yield batch
            batch = []
    if batch:
        yield batch


def deliver_batch(sender: Sender, batch: list[Message], policy: DeliveryPolicy,
                  sleep: Callable[[float], None] = time.sleep, rand: Callable[[], float] = random.random,
                  clock: Callable[[], float] = time.time) -> list[Result]:
    """Send one batch until every message is acknowledged, rejected, or out of attempts."""
    results: list[Result] = []
    # Work items: (messages, attempts made so far). A rejected group of several is split, not retried as is.
    work: deque[tuple[list[Message], int]] = deque([(batch, 0)])
    while work:
        group, made = work.popleft()
        attempt = made + 1
        outcome = sender.send(group, idempotency_key(group))
        acked_at = clock()
        results += [Result(m, DELIVERED, acked_at, attempt) for m in outcome.acknowledged]
        retry: list[Message] = []
        rejected: list[tuple[Message, Problem]] = []
        retry_after: float | None = None
        last: Problem | None = None
        for m, problem in outcome.problems:
            last = problem
            if problem.retryable:
                retry.append(m)
                if problem.retry_after is not None:
                    retry_after = max(retry_after or 0.0, problem.retry_after)
            else:
                rejected.append((m, problem))
        if rejected:
            whole = len(rejected) == len(group) and not outcome.acknowledged
            if len(group) > 1 and whole and all(p.about_records for _, p in rejected):
                # The endpoint refused the whole request: find the record(s) it refuses by halving.
                half = len(group) // 2
                work.appendleft((group[half:], made))
                work.appendleft((group[:half], made))
            else:
                results += [Result(m, FAILED, None, attempt, p) for m, p in rejected]
        if retry:
            if attempt >= policy.attempts:
                assert last is not None
                results += [Result(m, FAILED, None, attempt, p) for m, p in outcome.problems if p.retryable]
            else:
                wait = backoff(attempt, policy, retry_after, rand)
                log.info("%d message(s) not acknowledged (%s): attempt %d of %d in %.2fs", len(retry),
                         last.error_class if last else "?", attempt + 1, policy.attempts, wait)
                sleep(wait)
                work.appendleft((retry, attempt))
    return results


class Journal:
    """The acknowledgement journal of one partition: one JSON line per delivered message, synced per batch.

    ``None`` folder: no journal (the driver records the acknowledgements when the partition's results come
    back; a killed task then re-sends its whole partition, always with the same message ids).
    """

    def __init__(self, folder: str | None, name: str) -> None:
        self.handle: IO[str] | None = None
        if folder is not None:
            os.makedirs(folder, exist_ok=True)
            self.handle = open(os.path.join(folder, name), "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def record(self, lines: list[str]) -> None:
        """Append JSON lines (one per acknowledged message) and sync them before the next batch is sent."""
        if self.handle is None or not lines:
            return
        self.handle.write("".join(line + "\n" for line in lines))
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def deliver_partition(sender: Sender, messages: Iterable[Message], policy: DeliveryPolicy,
                      on_delivered: Callable[[list[Result]], None] = lambda _r: None,
                      sleep: Callable[[float], None] = time.sleep) -> Iterator[Result]:
    """Every message of a partition, batched, rate-limited and retried; ``on_delivered`` is called with each
    batch's acknowledged results before the next batch is sent (the journal)."""
    limiter = RateLimiter(policy.rate_per_second, sleep=sleep)
    try:
        for batch in batches(messages, policy):
            limiter.acquire(len(batch))
            results = deliver_batch(sender, batch, policy, sleep=sleep)
            on_delivered([r for r in results if r.status == DELIVERED])
            yield from results
    finally:
        sender.close()
