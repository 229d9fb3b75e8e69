"""Audience rules compiled to Spark columns, evaluated together over one per-profile DataFrame.

Every audience's rule becomes a boolean :class:`~pyspark.sql.Column` over the same frame: the
profile snapshot of the run date with one column per distinct event measure. So fifty audiences
cost one scan of the profiles and one aggregation over the events, not fifty of each:

1. :func:`collect_event_counters` lists the distinct event measures the rules use: counts (with
   ``where`` filters, within a window), aggregates of an event field (sum, avg, min, max, count
   distinct) and recency (days since the last event of a type);
2. :func:`event_counters` computes them all in one ``groupBy(profile_id)`` of ``agg(when(...))``;
3. :func:`with_counters` attaches them to the profiles (a profile without events counts 0);
4. :func:`transform_qualify` evaluates every rule in one projection and yields (audience_id, profile_id).
   A rule naming another audience (``audience: id``) inlines that audience's compiled column, so
   audiences of audiences are evaluated in dependency order within the same projection.

An audience naming a merge policy other than the default reads its attributes from columns
prefixed with :func:`policy_prefix` (the same fragments merged under that policy, joined to the
profiles by the caller): one frame, one projection, whatever the policies.

Operators follow Spark: ``regex`` is a Java regular expression found anywhere in the value (anchor
it with ``^...$`` to match the whole value); ``starts_with``, ``ends_with``, ``contains`` and ``=`` on
strings are case-sensitive.

Null semantics: every leaf is coalesced to false, so a comparison with a missing attribute is
false (never null) and only ``missing`` -- or a ``not`` over a false -- qualifies such a profile.
An aggregate over no events (sum, avg, min, max) and the recency of a profile without such an
event are missing too: their conditions are false. ``count_distinct`` over no events is 0.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import operator
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdp.errors import CdpError
from cdp.workspace.models import (
    AttributeCondition,
    AudienceSpec,
    EventCondition,
    RecencyCondition,
    Rule,
    SequenceCondition,
    SequenceStep,
    Window,
)

PROFILE_ID = "profile_id"
AUDIENCE_ID = "audience_id"
EVENTS_COLUMNS = (PROFILE_ID, "dataset", "event_type", "event_date")
COUNTED = ("count", "count_distinct")  # measures that are 0, not missing, for a profile without events


class RuleError(CdpError):
    """An audience rule cannot be compiled against the profile snapshot (unknown column, bad literal)."""


def policy_prefix(policy: str) -> str:
    """The prefix of the attribute columns merged under a non-default merge policy (``_merge_<policy>__``)."""
    return f"_merge_{policy}__"


def field_column(name: str) -> str:
    """The column of the events frame carrying event field ``name`` (prefixed: no clash with event_type...)."""
    return f"field_{name}"


@dataclass(frozen=True, order=True)
class EventCounter:
    """One distinct event measure shared by every rule that uses it: one value per profile.

    ``fn`` is ``count`` (events matching), an aggregate of ``field`` (sum, avg, min, max,
    count_distinct) or ``days_since_last`` (days between the last matching event and the run date).
    ``dataset`` None takes the type from every event dataset. ``window`` and ``where`` are the JSON
    of the rule's Window and filters (hashable, so identical conditions share one column); a window
    of None is unbounded (all events up to the run date).
    """

    event_type: str
    dataset: str | None
    window: str | None
    where: str = "[]"
    fn: str = "count"
    field: str | None = None

    @classmethod
    def of(cls, condition: EventCondition) -> EventCounter:
        where = json.dumps([f.model_dump(mode="json") for f in condition.where], sort_keys=True)
        window = condition.within.model_dump_json(by_alias=True, exclude_none=True)
        if condition.aggregate is not None:
            return cls(condition.event_type, condition.dataset, window, where, condition.aggregate.fn,
                       condition.aggregate.field)
        return cls(condition.event_type, condition.dataset, window, where)

    @classmethod
    def times(cls, step: SequenceStep, window: Window) -> EventCounter:
        """The times of a sequence step's events in the window (a list per profile)."""
        where = json.dumps([f.model_dump(mode="json") for f in step.where], sort_keys=True)
        return cls(step.event_type, step.dataset, window.model_dump_json(by_alias=True, exclude_none=True), where,
                   "times")

    @classmethod
    def recency(cls, condition: RecencyCondition) -> EventCounter:
        return cls(condition.event_type, condition.dataset, None, "[]", "days_since_last")

    @property
    def last_days(self) -> int | None:
        """The N of a ``last_days`` window (None for other windows)."""
        return self.window_model.last_days if self.window_model is not None else None

    @property
    def window_model(self) -> Window | None:
        return Window.model_validate_json(self.window) if self.window is not None else None

    @property
    def filters(self) -> list[dict[str, Any]]:
        return list(json.loads(self.where))

    @property
    def column(self) -> str:
        """A column name unique to this measure; readable, with a hash so odd event types cannot collide."""
        window = self.window_model
        span = f"{window.last_days}d" if window is not None and window.last_days else "w"
        readable = re.sub(r"[^A-Za-z0-9_]", "_", f"{self.fn}_{self.event_type}_{self.dataset or 'any'}_{span}")
        digest = hashlib.sha1(repr((self.event_type, self.dataset, self.window, self.where, self.fn,
                                    self.field)).encode()).hexdigest()[:8]
        return f"_events_{readable}_{digest}"

    def bounds(self, run_date: dt.date) -> tuple[dt.date | None, dt.date]:
        """First (None: unbounded) and last event day counted for a run date."""
        window = self.window_model
        return window.bounds(run_date) if window is not None else (None, run_date)

    def fields(self) -> set[str]:
        """The event fields this measure reads."""
        return {f["field"] for f in self.filters} | ({self.field} if self.field else set())


def referenced_audiences(rule: Rule) -> list[str]:
    """The audience ids a rule names (``audience: id``), in order of appearance."""
    return [node.audience for _, node in rule.walk() if node.audience is not None]


def with_dependencies(audiences: Mapping[str, AudienceSpec], ids: Iterable[str]) -> list[AudienceSpec]:
    """The audiences ``ids`` and every audience they depend on, dependencies first."""
    out: dict[str, AudienceSpec] = {}

    def visit(audience_id: str, path: tuple[str, ...]) -> None:
        if audience_id in out:
            return
        if audience_id in path:
            raise RuleError(f"audiences form a cycle: {' -> '.join((*path, audience_id))}")
        if audience_id not in audiences:
            raise RuleError(f"audience '{path[-1] if path else audience_id}' refers to unknown audience "
                            f"'{audience_id}'")
        for dep in referenced_audiences(audiences[audience_id].rule):
            visit(dep, (*path, audience_id))
        out[audience_id] = audiences[audience_id]

    for audience_id in ids:
        visit(audience_id, ())
    return list(out.values())


def _steps(sequence: SequenceCondition) -> list[SequenceStep]:
    return [sequence.first, sequence.then] + ([sequence.not_between] if sequence.not_between else [])


def collect_event_counters(audiences: Iterable[AudienceSpec]) -> list[EventCounter]:
    """Every distinct event measure across the audiences, in a stable order."""
    found: set[EventCounter] = set()
    for a in audiences:
        for _, node in a.rule.walk():
            if node.events is not None:
                found.add(EventCounter.of(node.events))
            if node.last_event is not None:
                found.add(EventCounter.recency(node.last_event))
            if node.sequence is not None:
                found.update(EventCounter.times(step, node.sequence.within) for step in _steps(node.sequence))
    return sorted(found, key=lambda c: (c.dataset or "", c.event_type, c.last_days or 0, c.fn, c.window or "",
                                        c.where, c.field or ""))


def event_fields(counters: Iterable[EventCounter]) -> set[str]:
    """Every event field some measure filters on or aggregates."""
    return set().union(*[c.fields() for c in counters]) if counters else set()


def lookback_start(counters: Sequence[EventCounter], run_date: dt.date) -> dt.date | None:
    """The first event day any measure reads (None: all history), never after the run date."""
    firsts = [c.bounds(run_date)[0] for c in counters]
    if not firsts or any(f is None for f in firsts):
        return None
    return min(min(f for f in firsts if f is not None), run_date)


def _event_filter(spec: Mapping[str, Any], schema: T.StructType) -> Column:
    name = spec["field"]
    column_name = field_column(name)
    if column_name not in schema.names:
        raise RuleError(f"event field '{name}' is not a field of the events")
    return F.coalesce(_predicate(F.col(column_name), schema[column_name].dataType, spec["op"], spec.get("value"),
                                 name), F.lit(False))


def event_counters(events: DataFrame, conditions: Sequence[EventCounter], run_date: dt.date) -> DataFrame:
    """Compute every measure per profile in one aggregation.

    ``events`` has columns (profile_id, dataset, event_type, event_date) plus ``field_<name>`` for
    each event field a measure reads; the result has profile_id then one column per measure
    (:attr:`EventCounter.column`), for profiles with any event.
    """
    if not conditions:
        return events.select(PROFILE_ID).distinct()
    aggregates = []
    for counter in conditions:
        first, last = counter.bounds(run_date)
        matches = (F.col("event_type") == F.lit(counter.event_type)) & (F.col("event_date") <= F.lit(last))
        if first is not None:
            matches = matches & (F.col("event_date") >= F.lit(first))
        if counter.dataset is not None:
            matches = matches & (F.col("dataset") == F.lit(counter.dataset))
        for spec in counter.filters:
            matches = matches & _event_filter(spec, events.schema)
        # Aggregates skip the nulls when() yields for non-matching rows.
        if counter.fn == "count":
            value = F.count(F.when(matches, F.lit(1)))
        elif counter.fn == "times":
            if "event_time" not in events.columns:
                raise RuleError("a sequence needs the events' event_time column")
            value = F.collect_list(F.when(matches, F.col("event_time")))
        elif counter.fn == "days_since_last":
            value = F.datediff(F.lit(run_date), F.max(F.when(matches, F.col("event_date"))))
        else:
            assert counter.field is not None
            column_name = field_column(counter.field)
            if column_name not in events.columns:
                raise RuleError(f"event field '{counter.field}' is not a field of the events")
            picked = F.when(matches, F.col(column_name))
            value = {"sum": F.sum, "avg": F.avg, "min": F.min, "max": F.max,
                     "count_distinct": F.count_distinct}[counter.fn](picked)
        aggregates.append(value.alias(counter.column))
    return events.groupBy(PROFILE_ID).agg(*aggregates)


def with_counters(profiles: DataFrame, counters: DataFrame, conditions: Sequence[EventCounter]) -> DataFrame:
    """The profiles with their measure columns; a profile without events counts 0, so ``at_most: 0`` holds."""
    if not conditions:
        return profiles
    columns = [c.column for c in conditions]
    joined = profiles.join(counters.select(PROFILE_ID, *columns), PROFILE_ID, "left")
    return joined.fillna(0, subset=[c.column for c in conditions if c.fn in COUNTED])


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


def _predicate(column: Column, dtype: T.DataType, op: str, value: Any, name: str) -> Column:
    """One operator applied to a scalar column of type ``dtype``; may be null where the column is."""
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


def _resolve(path: str, schema: T.StructType, prefix: str = "") -> tuple[Column, T.DataType]:
    """The column and type of a dotted attribute path (``address.city``) through struct fields; with a
    ``prefix``, the attribute is read from the prefixed column (another merge policy's) when there is one."""
    head, *rest = path.split(".")
    if prefix and f"{prefix}{head}" in schema.names:
        head = f"{prefix}{head}"
    if head not in schema.names:
        raise RuleError(f"attribute '{path}' is not a column of the profiles")
    column, dtype = F.col(head), schema[head].dataType
    for part in rest:
        if not isinstance(dtype, T.StructType) or part not in dtype.names:
            raise RuleError(f"attribute '{path}': '{part}' is not a field of an object")
        column, dtype = column.getField(part), dtype[part].dataType
    return column, dtype


def _attribute(condition: AttributeCondition, schema: T.StructType, prefix: str = "") -> Column:
    """One attribute leaf; may be null where the attribute is (the caller coalesces)."""
    name, op, value = condition.attribute, condition.op, condition.value
    column, dtype = _resolve(name, schema, prefix)
    if isinstance(dtype, T.MapType):
        if condition.key is None:
            if op not in ("exists", "missing"):
                raise RuleError(f"attribute '{name}' is a map: '{op}' needs 'key'")
            return _predicate(column, dtype, op, value, name)
        column, dtype = column.getItem(condition.key), dtype.valueType
    if isinstance(dtype, T.ArrayType):
        if op in ("exists", "missing") and condition.match is None:
            # An empty array holds no value: it is missing like a null one.
            present = column.isNotNull() & (F.size(column) > 0)
            return present if op == "exists" else ~present
        element = dtype.elementType

        def test(x: Column) -> Column:
            return F.coalesce(_predicate(x, element, op, value, name), F.lit(False))

        if condition.match == "all":
            return (F.size(column) > 0) & F.forall(column, test)
        return F.exists(column, test)
    return _predicate(column, dtype, op, value, name)


def _events(condition: EventCondition, schema: T.StructType) -> Column:
    counter = EventCounter.of(condition)
    if counter.column not in schema.names:
        raise RuleError(f"event measure {counter.column} is not a column of the profiles (attach it with "
                        "with_counters)")
    measure = F.col(counter.column)
    if condition.aggregate is not None:
        agg = condition.aggregate
        return _predicate(measure, schema[counter.column].dataType, agg.op, agg.value, f"{agg.fn}({agg.field})")
    count = F.coalesce(measure, F.lit(0))
    if condition.at_least is not None:
        return count >= condition.at_least
    if condition.at_most is not None:
        return count <= condition.at_most
    return count == F.lit(condition.exactly)


def _recency(condition: RecencyCondition, schema: T.StructType) -> Column:
    counter = EventCounter.recency(condition)
    if counter.column not in schema.names:
        raise RuleError(f"event measure {counter.column} is not a column of the profiles")
    days = F.col(counter.column)
    if condition.more_than_days_ago is not None:
        return days > condition.more_than_days_ago
    return days < F.lit(condition.less_than_days_ago)


def _sequence(condition: SequenceCondition, schema: T.StructType) -> Column:
    """Some ``first`` event at time a and ``then`` event at b with a < b <= a + within_hours, and (with
    ``not_between``) no such event at c with a < c < b: higher-order functions over the per-profile time lists
    the single aggregation collected."""
    columns = []
    for step in _steps(condition):
        name = EventCounter.times(step, condition.within).column
        if name not in schema.names:
            raise RuleError(f"event measure {name} is not a column of the profiles")
        columns.append(F.coalesce(F.col(name), F.array().cast("array<timestamp>")))
    firsts, thens = columns[0], columns[1]
    limit = F.make_dt_interval(secs=F.lit(condition.within_hours * 3600.0))

    def follows(a: Column) -> Column:
        def then_ok(b: Column) -> Column:
            ok = (b > a) & (b <= a + limit)
            if condition.not_between is not None:
                ok = ok & ~F.exists(columns[2], lambda c: (c > a) & (c < b))
            return ok
        return F.exists(thens, then_ok)

    return F.exists(firsts, follows)


def compile_rule(rule: Rule, schema: T.StructType, audiences: Mapping[str, Column] | None = None,
                 prefix: str = "") -> Column:
    """A rule as a boolean column (never null) over profiles carrying the measure columns.

    ``schema`` is the schema of that per-profile frame: it gives each attribute's type, so ISO
    strings compare with date and timestamp attributes as dates and times. ``audiences`` holds the
    compiled columns of the audiences the rule may name. ``prefix``: read attributes from the columns
    of another merge policy (:func:`policy_prefix`).
    """
    resolved = audiences or {}
    if rule.all is not None:
        return functools.reduce(lambda a, b: a & b, (compile_rule(r, schema, resolved, prefix) for r in rule.all))
    if rule.any is not None:
        return functools.reduce(lambda a, b: a | b, (compile_rule(r, schema, resolved, prefix) for r in rule.any))
    if rule.not_ is not None:
        # The child is never null, so negation is plain two-valued logic.
        return ~compile_rule(rule.not_, schema, resolved, prefix)
    if rule.audience is not None:
        if rule.audience not in resolved:
            raise RuleError(f"audience '{rule.audience}' is not defined (or not evaluated with this one)")
        return resolved[rule.audience]
    leaf: Column
    if rule.events is not None:
        leaf = _events(rule.events, schema)
    elif rule.last_event is not None:
        leaf = _recency(rule.last_event, schema)
    elif rule.sequence is not None:
        leaf = _sequence(rule.sequence, schema)
    else:
        condition = rule.attribute_condition
        assert condition is not None  # the model guarantees exactly one kind
        leaf = _attribute(condition, schema, prefix)
    return F.coalesce(leaf, F.lit(False))


def compile_audiences(audiences: Iterable[AudienceSpec], schema: T.StructType,
                      policies: Mapping[str, str] | None = None) -> dict[str, Column]:
    """Every audience's rule compiled, by audience id, dependencies first; errors name the audience.

    ``policies`` maps a merge policy name to the prefix of its attribute columns: an audience naming
    one of them reads its attributes there; the others read the profile columns (the default policy).
    An audience naming another keeps that audience's own policy (its compiled column is inlined).
    """
    by_id = {a.id: a for a in audiences}
    prefixes = policies or {}
    compiled: dict[str, Column] = {}
    for audience in with_dependencies(by_id, by_id):
        prefix = prefixes.get(audience.merge_policy or "", "")
        try:
            compiled[audience.id] = compile_rule(audience.rule, schema, compiled, prefix)
        except RuleError as exc:
            raise RuleError(f"audience '{audience.id}': {exc}") from None
    # In the order given, not the dependency order.
    return {a: compiled[a] for a in by_id}


def transform_qualify(profiles: DataFrame, audiences: Sequence[AudienceSpec],
                      policies: Mapping[str, str] | None = None) -> DataFrame:
    """(audience_id, profile_id) for every profile each audience's rule selects.

    All rules are evaluated in one projection: each row builds the array of the audience ids it
    qualifies for, which is then exploded, so the profiles are read once whatever the number of
    audiences. ``policies``: see :func:`compile_audiences`.
    """
    compiled: Mapping[str, Column] = compile_audiences(audiences, profiles.schema, policies)
    if not compiled:
        return profiles.select(F.lit(None).cast("string").alias(AUDIENCE_ID), PROFILE_ID).where(F.lit(False))
    hits = F.array(*[F.when(condition, F.lit(audience_id)) for audience_id, condition in compiled.items()])
    qualified = F.filter(hits, lambda x: x.isNotNull())
    return profiles.select(F.explode(qualified).alias(AUDIENCE_ID), PROFILE_ID)


# ---------------------------------------------------------------- streaming eligibility

STREAMING = "streaming"
BATCH = "batch"


@dataclass(frozen=True)
class Eligibility:
    """Whether an audience can also be evaluated continuously (streaming) or only in the daily batch, and why."""

    evaluation: str  # STREAMING or BATCH
    reason: str

    def describe(self, audience_id: str) -> str:
        """One line for ``cdp validate``: ``audience x: batch only (...)``."""
        kind = "streaming-eligible" if self.evaluation == STREAMING else "batch only"
        return f"audience {audience_id}: {kind} ({self.reason})"


def _window_text(window: Window) -> str:
    if window.last_days is not None:
        return f"event window of {window.last_days} day{'s' if window.last_days > 1 else ''}"
    if window.between_days_ago is not None:
        return f"event window between {window.between_days_ago[0]} and {window.between_days_ago[1]} days ago"
    if window.today:
        return "event window of today"
    return f"absolute event window from {window.from_}" + (f" to {window.to}" if window.to else "")


def _short_window(window: Window) -> bool:
    """A window of at most one day ending on the evaluation day: what a stream can hold per profile."""
    return bool(window.today) or window.last_days == 1


def _event_leaves(rule: Rule, audiences: Mapping[str, AudienceSpec], negated: bool,
                  seen: frozenset[str]) -> Iterable[tuple[Rule, bool]]:
    """Event and recency leaves of a rule, through referenced audiences, with whether a ``not`` covers them."""
    if rule.events is not None or rule.last_event is not None or rule.sequence is not None:
        yield rule, negated
    for child in (rule.all or []) + (rule.any or []):
        yield from _event_leaves(child, audiences, negated, seen)
    if rule.not_ is not None:
        yield from _event_leaves(rule.not_, audiences, not negated, seen)
    if rule.audience is not None and rule.audience in audiences and rule.audience not in seen:
        yield from _event_leaves(audiences[rule.audience].rule, audiences, negated, seen | {rule.audience})


def classify(audience: AudienceSpec, audiences: Mapping[str, AudienceSpec] | None = None) -> Eligibility:
    """Streaming eligibility by the product's rules: attribute-only audiences, one event within a window
    of at most a day (``today`` or ``last_days: 1``), or one ordered sequence within 24 hours, are
    streaming-eligible; everything else is batch only.

    Rules naming other audiences are judged with those audiences' conditions included. The first
    reason found (in rule order) is given, so the user knows what to change.
    """
    leaves = list(_event_leaves(audience.rule, audiences or {}, False, frozenset({audience.id})))
    if not leaves:
        return Eligibility(STREAMING, "attribute conditions only")
    for leaf, negated in leaves:
        if leaf.last_event is not None:
            return Eligibility(BATCH, f"recency of the last '{leaf.last_event.event_type}' event is judged daily")
        if leaf.sequence is not None:
            order = f"'{leaf.sequence.first.event_type}' then '{leaf.sequence.then.event_type}'"
            if negated:
                return Eligibility(BATCH, f"the absence of the sequence {order} (under not) needs the whole window")
            if leaf.sequence.within_hours > 24:
                return Eligibility(BATCH, f"the sequence {order} spans {leaf.sequence.within_hours:g} hours, "
                                          "over 24 hours")
            continue
        condition = leaf.events
        assert condition is not None
        if negated:
            return Eligibility(BATCH, f"the absence of '{condition.event_type}' events (under not) needs the "
                                      "whole window")
        if not _short_window(condition.within):
            return Eligibility(BATCH, f"{_window_text(condition.within)} is over 24 hours")
        if condition.aggregate is not None:
            return Eligibility(BATCH, f"{condition.aggregate.fn} of event field '{condition.aggregate.field}' "
                                      "needs the whole window")
        if condition.at_least != 1:
            counted = ("at_least", condition.at_least) if condition.at_least is not None else (
                ("at_most", condition.at_most) if condition.at_most is not None else ("exactly", condition.exactly))
            return Eligibility(BATCH, f"counting '{condition.event_type}' events ({counted[0]}: {counted[1]}) "
                                      "needs the whole window; only one event (at_least: 1) streams")
    if len(leaves) > 1:
        types = ", ".join(leaf.events.event_type if leaf.events is not None else "sequence" for leaf, _ in leaves)
        return Eligibility(BATCH, f"several event conditions ({types}) that are not one ordered sequence")
    sequence = leaves[0][0].sequence
    if sequence is not None:
        return Eligibility(STREAMING, f"ordered events '{sequence.first.event_type}' then "
                                      f"'{sequence.then.event_type}' within {sequence.within_hours:g} hours")
    only = leaves[0][0].events
    assert only is not None
    when = "today" if only.within.today else "the last day"
    return Eligibility(STREAMING, f"one '{only.event_type}' event {when}")


def classify_all(audiences: Mapping[str, AudienceSpec]) -> dict[str, Eligibility]:
    """Every audience classified, by id, in id order."""
    return {audience_id: classify(audiences[audience_id], audiences) for audience_id in sorted(audiences)}
