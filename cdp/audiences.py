"""Audience rules compiled to Spark columns, evaluated together over one per-profile DataFrame.

Every audience's rule becomes a boolean :class:`~pyspark.sql.Column` over the same frame: the
profile snapshot of the run date with one counter column per distinct event condition. So fifty
audiences cost one scan of the profiles and one aggregation over the events, not fifty of each:

1. :func:`collect_event_counters` lists the distinct (event type, dataset, window) triples the rules use;
2. :func:`event_counters` counts them all in one ``groupBy(profile_id)`` of ``count(when(...))``;
3. :func:`with_counters` attaches them to the profiles (a profile without events counts 0);
4. :func:`transform_qualify` evaluates every rule in one projection and yields (audience_id, profile_id).

Null semantics: every leaf is coalesced to false, so a comparison with a missing attribute is
false (never null) and only ``missing`` -- or a ``not`` over a false -- qualifies such a profile.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import operator
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdp.errors import CdpError
from cdp.workspace.models import AttributeCondition, AudienceSpec, EventCondition, Rule

PROFILE_ID = "profile_id"
AUDIENCE_ID = "audience_id"
EVENTS_COLUMNS = (PROFILE_ID, "dataset", "event_type", "event_date")


class RuleError(CdpError):
    """An audience rule cannot be compiled against the profile snapshot (unknown column, bad literal)."""


@dataclass(frozen=True, order=True)
class EventCounter:
    """One distinct event condition shared by every rule that uses it: a count per profile.

    ``dataset`` None counts the type in every event dataset. The window is the last ``last_days``
    days, the run date included.
    """

    event_type: str
    dataset: str | None
    last_days: int

    @classmethod
    def of(cls, condition: EventCondition) -> EventCounter:
        return cls(condition.event_type, condition.dataset, condition.within.last_days)

    @property
    def column(self) -> str:
        """A column name unique to this counter; readable, with a hash so odd event types cannot collide."""
        readable = re.sub(r"[^A-Za-z0-9_]", "_", f"{self.event_type}_{self.dataset or 'any'}_{self.last_days}d")
        digest = hashlib.sha1(repr((self.event_type, self.dataset, self.last_days)).encode()).hexdigest()[:8]
        return f"_events_{readable}_{digest}"

    def window(self, run_date: dt.date) -> tuple[dt.date, dt.date]:
        """First and last day counted: [run_date - N + 1, run_date]."""
        return run_date - dt.timedelta(days=self.last_days - 1), run_date


def _walk(rule: Rule) -> Iterable[Rule]:
    yield rule
    for child in (rule.all or []) + (rule.any or []) + ([rule.not_] if rule.not_ is not None else []):
        yield from _walk(child)


def collect_event_counters(audiences: Iterable[AudienceSpec]) -> list[EventCounter]:
    """Every distinct event condition across the audiences, in a stable order."""
    found = {EventCounter.of(node.events) for a in audiences for node in _walk(a.rule) if node.events is not None}
    return sorted(found, key=lambda c: (c.dataset or "", c.event_type, c.last_days))


def event_counters(events: DataFrame, conditions: Sequence[EventCounter], run_date: dt.date) -> DataFrame:
    """Count every condition per profile in one aggregation.

    ``events`` has columns (profile_id, dataset, event_type, event_date); the result has profile_id
    then one long column per condition (:attr:`EventCounter.column`), for profiles with any event.
    """
    if not conditions:
        return events.select(PROFILE_ID).distinct()
    aggregates = []
    for counter in conditions:
        first, last = counter.window(run_date)
        matches = (F.col("event_type") == F.lit(counter.event_type)) & F.col("event_date").between(
            F.lit(first), F.lit(last))
        if counter.dataset is not None:
            matches = matches & (F.col("dataset") == F.lit(counter.dataset))
        # count() skips the nulls when() yields for non-matching rows.
        aggregates.append(F.count(F.when(matches, F.lit(1))).alias(counter.column))
    return events.groupBy(PROFILE_ID).agg(*aggregates)


def with_counters(profiles: DataFrame, counters: DataFrame, conditions: Sequence[EventCounter]) -> DataFrame:
    """The profiles with their counter columns; a profile without events gets 0, so ``at_most: 0`` holds."""
    if not conditions:
        return profiles
    columns = [c.column for c in conditions]
    joined = profiles.join(counters.select(PROFILE_ID, *columns), PROFILE_ID, "left")
    return joined.fillna(0, subset=columns)


# ---------------------------------------------------------------- compiling rules


def _text(value: Any) -> str:
    """A YAML scalar as the string a string attribute would hold (true, not True)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _as_date(value: Any, attribute: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise RuleError(f"attribute '{attribute}' is a date; '{value}' is not an ISO date (YYYY-MM-DD)") from None


def _as_timestamp(value: Any, attribute: str) -> dt.datetime:
    if isinstance(value, dt.datetime):
        out = value
    elif isinstance(value, dt.date):
        out = dt.datetime.combine(value, dt.time(0))
    else:
        try:
            out = dt.datetime.fromisoformat(str(value))
        except ValueError:
            raise RuleError(f"attribute '{attribute}' is a timestamp; '{value}' is not an ISO-8601 time") from None
    # A time without an offset means UTC, like every date and time of the platform.
    return out if out.tzinfo is not None else out.replace(tzinfo=dt.UTC)


def _literal(value: Any, dtype: T.DataType, attribute: str) -> Column:
    """The rule's value as a literal of the attribute's type.

    Casting the literal (never the column) keeps comparisons typed: a string attribute compared with
    an unquoted YAML number must not make ANSI Spark cast every value of the column to a number.
    """
    if isinstance(dtype, T.StringType):
        return F.lit(_text(value))
    if isinstance(dtype, T.DateType):
        return F.lit(_as_date(value, attribute))
    if isinstance(dtype, T.TimestampType | T.TimestampNTZType):
        return F.lit(_as_timestamp(value, attribute)).cast(dtype)
    if isinstance(dtype, T.BooleanType) and isinstance(value, str):
        if value.lower() not in ("true", "false"):
            raise RuleError(f"attribute '{attribute}' is boolean; '{value}' is not true or false")
        return F.lit(value.lower() == "true")
    return F.lit(value)


_COMPARISONS = {"=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
                ">=": operator.ge}


def _attribute(condition: AttributeCondition, schema: T.StructType) -> Column:
    """One attribute leaf; may be null where the attribute is (the caller coalesces)."""
    name, op, value = condition.attribute, condition.op, condition.value
    if name not in schema.names:
        raise RuleError(f"attribute '{name}' is not a column of the profiles")
    dtype = schema[name].dataType
    column = F.col(name)
    if op == "exists":
        return column.isNotNull()
    if op == "missing":
        return column.isNull()
    if op in ("in", "not_in"):
        found = column.isin(*[_literal(v, dtype, name) for v in value])
        return found if op == "in" else ~found
    if op == "between":
        low, high = (_literal(v, dtype, name) for v in value)
        return (column >= low) & (column <= high)
    if op in ("starts_with", "ends_with", "contains", "regex"):
        text = _text(value)
        if op == "starts_with":
            return column.startswith(text)
        if op == "ends_with":
            return column.endswith(text)
        if op == "contains":
            return column.contains(text)
        return column.rlike(text)
    return _COMPARISONS[op](column, _literal(value, dtype, name))


def _events(condition: EventCondition) -> Column:
    count = F.coalesce(F.col(EventCounter.of(condition).column), F.lit(0))
    if condition.at_least is not None:
        return count >= condition.at_least
    if condition.at_most is not None:
        return count <= condition.at_most
    return count == condition.exactly


def compile_rule(rule: Rule, schema: T.StructType) -> Column:
    """A rule as a boolean column (never null) over profiles carrying the counter columns.

    ``schema`` is the schema of that per-profile frame: it gives each attribute's type, so ISO
    strings compare with date and timestamp attributes as dates and times.
    """
    if rule.all is not None:
        return functools.reduce(lambda a, b: a & b, (compile_rule(r, schema) for r in rule.all))
    if rule.any is not None:
        return functools.reduce(lambda a, b: a | b, (compile_rule(r, schema) for r in rule.any))
    if rule.not_ is not None:
        # The child is never null, so negation is plain two-valued logic.
        return ~compile_rule(rule.not_, schema)
    if rule.events is not None:
        return _events(rule.events)
    condition = rule.attribute_condition
    assert condition is not None  # the model guarantees exactly one kind
    return F.coalesce(_attribute(condition, schema), F.lit(False))


def compile_audiences(audiences: Iterable[AudienceSpec], schema: T.StructType) -> dict[str, Column]:
    """Every audience's rule compiled, by audience id; errors name the audience."""
    compiled: dict[str, Column] = {}
    for audience in audiences:
        try:
            compiled[audience.id] = compile_rule(audience.rule, schema)
        except RuleError as exc:
            raise RuleError(f"audience '{audience.id}': {exc}") from None
    return compiled


def transform_qualify(profiles: DataFrame, audiences: Sequence[AudienceSpec]) -> DataFrame:
    """(audience_id, profile_id) for every profile each audience's rule selects.

    All rules are evaluated in one projection: each row builds the array of the audience ids it
    qualifies for, which is then exploded, so the profiles are read once whatever the number of
    audiences.
    """
    compiled: Mapping[str, Column] = compile_audiences(audiences, profiles.schema)
    if not compiled:
        return profiles.select(F.lit(None).cast("string").alias(AUDIENCE_ID), PROFILE_ID).where(F.lit(False))
    hits = F.array(*[F.when(condition, F.lit(audience_id)) for audience_id, condition in compiled.items()])
    qualified = F.filter(hits, lambda x: x.isNotNull())
    return profiles.select(F.explode(qualified).alias(AUDIENCE_ID), PROFILE_ID)
