"""Which rows a file destination receives, whatever the format: selection, mapping, exclusions, counts.

A *unit* is what one row of a file stands for: one (audience, profile) membership with
``layout: per_audience``, one profile with ``layout: combined``. The pipeline is pure:

1. :func:`transform_units` - the members of the mapped audiences on a day (realized and existing),
   joined to that day's profile, mapped to the destination's columns (internal names ``__c0``,
   ``__c1``... in mapping order; headers are applied by the renderer);
2. :func:`transform_changes` - for an incremental export, the units whose membership or mapped values
   changed since the base day (the last day this destination was delivered): ``realized`` (entered),
   ``exited`` (left: the values are today's profile when it still exists, else those delivered last),
   ``existing`` (a mapped value changed);
3. :func:`transform_exclusions` - a reason per unit that is not exported (``consent``: the profile did not
   consent to one of the destination's purposes (:mod:`cdp.governance.consent`), checked first, so such a
   unit never wins a deduplication; ``no_identity``: nothing in the
   row identifies a person; ``missing_mandatory``: a mapped field marked ``required`` is empty;
   ``deduplicated``: another unit of the same file has the same deduplication key and qualified later,
   or as late and has the smaller profile id).

received = activated + excluded, per reason, always (delivery failures are counted by the job).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdp.governance.consent import CONSENT, consent_column
from cdp.identities import normalize
from cdp.workspace.models import FieldSpec, FileDestination, MappedField, Namespace

MEMBER_STATUSES = ("realized", "existing")
EXITED = "exited"
IDENTITY_SEPARATOR = "|"
# Internal columns of the unit frame (headers are applied last, positionally, so no header can clash).
AUDIENCE = "__audience_id"
PROFILE = "__profile_id"
STATUS = "__status"
QUALIFIED = "__qualified"
REASON = "__excluded"
SIGNATURE = "__signature"
CONSENTED = "__consented"

NO_IDENTITY = "no_identity"
MISSING_MANDATORY = "missing_mandatory"
DEDUPLICATED = "deduplicated"
EXCLUSION_REASONS = (CONSENT, NO_IDENTITY, MISSING_MANDATORY, DEDUPLICATED)
# A text value a spreadsheet would run as a formula; an E.164 phone number is left alone.
FORMULA_START = r"^[=+\-@\t\r]"
E164 = r"^\+[1-9][0-9]{6,14}$"


def value_column(i: int) -> str:
    return f"__c{i}"


def status_column(audience_id: str) -> str:
    """Combined layout: the internal column of one audience's membership status."""
    return f"__s_{audience_id}"


def qualified_column(audience_id: str) -> str:
    return f"__q_{audience_id}"


@dataclass(frozen=True)
class MappingContext:
    """What mapping needs to know about the workspace: attribute types and identity namespaces."""

    attributes: Mapping[str, FieldSpec]
    namespaces: Mapping[str, Namespace]
    text_only: bool  # CSV: nested values as JSON, several identities joined by "|"
    # consent purpose -> the profile attribute holding it (governance.consent_purposes)
    consent_attributes: Mapping[str, str] = field(default_factory=dict)

    def attribute_spec(self, path: str) -> FieldSpec | None:
        head, *rest = path.split(".")
        spec = self.attributes.get(head)
        for part in rest:
            spec = next((f for f in (spec.fields or []) if f.name == part), None) if spec is not None else None
        return spec

    def identifies(self, mapped: MappedField) -> bool:
        """Whether a mapped column identifies a person (an identity namespace, an identity field, profile_id)."""
        if mapped.source == "profile_id" or mapped.namespace is not None:
            return True
        spec = self.attribute_spec(mapped.source)
        return spec is not None and spec.identity is not None


def _sha256(value: Column) -> Column:
    return F.sha2(value, 256)


def mapped_value(mapped: MappedField, ctx: MappingContext) -> Column:
    """One mapped column over a profile row (columns of the profiles table)."""
    if mapped.source == "profile_id":
        return F.col("profile_id")
    if mapped.namespace is not None:
        values = F.array_sort(F.coalesce(F.col("identities").getItem(mapped.namespace),
                                         F.array().cast(T.ArrayType(T.StringType()))))
        if mapped.hash == "sha256":  # identity map values are already normalised (e-mail lower case, E.164)
            values = F.array_sort(F.transform(values, _sha256))
        if ctx.text_only:
            joined = F.array_join(values, IDENTITY_SEPARATOR)
            return F.when(joined != "", joined)
        return F.when(F.size(values) > 0, values)
    spec = ctx.attribute_spec(mapped.source)
    column = F.col(mapped.source)
    if mapped.hash == "sha256" and spec is not None:
        namespace = ctx.namespaces.get(spec.identity.namespace) if spec.identity is not None else None
        kind = namespace.type if namespace is not None else (spec.format or "string")
        region = namespace.default_region if namespace is not None else None
        return _sha256(normalize(kind, column, region))
    if ctx.text_only and spec is not None and spec.type in ("object", "array", "map"):
        return F.to_json(column)
    return column


def transform_units(members: DataFrame, profiles: DataFrame, dest: FileDestination, ctx: MappingContext) -> DataFrame:
    """The units of one day: key columns, ``__c<i>`` mapped values, statuses, and a ``__signature`` of all of it.

    ``members``: that day's membership rows (any status); ``profiles``: that day's profiles. Only realized
    and existing members of ``dest.audiences`` make units.
    """
    kept = members.where(F.col("status").isin(*MEMBER_STATUSES) & F.col("audience_id").isin(*dest.audiences)).select(
        F.col("audience_id").alias(AUDIENCE), F.col("profile_id").alias(PROFILE), F.col("status").alias(STATUS),
        F.col("last_qualification_time").alias(QUALIFIED))
    values = [mapped_value(m, ctx).alias(value_column(i)) for i, m in enumerate(dest.mapping)]
    consented = consent_column(dest.consent, ctx.consent_attributes).alias(CONSENTED)
    mapped = profiles.select(F.col("profile_id").alias(PROFILE), *values, *dedup_columns(dest), consented)
    joined = kept.join(mapped, PROFILE, "inner")
    value_names = [value_column(i) for i in range(len(dest.mapping))]
    # With consent purposes, consent is part of what an incremental export compares: a profile that grants it
    # later is sent, one that withdraws it is a change excluded for consent (nothing more is sent).
    signed = [*value_names, CONSENTED] if dest.consent else value_names
    if dest.layout == "per_audience":
        return joined.withColumn(SIGNATURE, F.to_json(F.struct(*signed)))
    # Combined: one unit per profile, a status and a qualification time per audience.
    per_audience = [agg for a in dest.audiences for agg in (
        F.max(F.when(F.col(AUDIENCE) == a, F.col(STATUS))).alias(status_column(a)),
        F.max(F.when(F.col(AUDIENCE) == a, F.col(QUALIFIED))).alias(qualified_column(a)))]
    helpers = [c for c in joined.columns if c.startswith("__dedup_")]
    grouped = joined.groupBy(PROFILE, *value_names, *helpers, CONSENTED).agg(F.max(QUALIFIED).alias(QUALIFIED),
                                                                             *per_audience)
    membership = [F.col(status_column(a)).isNotNull() for a in dest.audiences]
    return grouped.withColumn(SIGNATURE, F.to_json(F.struct(*signed, *membership)))


def unit_keys(dest: FileDestination) -> list[str]:
    return [AUDIENCE, PROFILE] if dest.layout == "per_audience" else [PROFILE]


def transform_changes(today: DataFrame, base: DataFrame, exits: DataFrame, dest: FileDestination) -> DataFrame:
    """The units of an incremental export: those that entered, left or changed since the base day.

    ``today`` and ``base`` come from :func:`transform_units`. ``exits`` holds today's exited membership rows
    (audience_id, profile_id, last_qualification_time) for the time a unit left. An exited unit keeps the
    values it was delivered with. Statuses: ``realized``, ``exited``, ``existing`` (per audience in the
    combined layout: an audience left gets ``exited``).
    """
    keys = unit_keys(dest)
    before = base.select(*keys, F.col(SIGNATURE).alias("__before"))
    entered_or_changed = (today.join(before, keys, "left")
                          .where(F.col("__before").isNull() | (F.col("__before") != F.col(SIGNATURE))))
    if dest.layout == "per_audience":
        entered_or_changed = entered_or_changed.withColumn(
            STATUS, F.when(F.col("__before").isNull(), F.lit("realized")).otherwise(F.lit("existing")))
        left = base.join(today.select(*keys), keys, "left_anti")
        exit_time = exits.select(F.col("audience_id").alias(AUDIENCE), F.col("profile_id").alias(PROFILE),
                                 F.col("last_qualification_time").alias("__exit_time"))
        left = (left.join(exit_time, keys, "left")
                .withColumn(STATUS, F.lit(EXITED))
                .withColumn(QUALIFIED, F.coalesce(F.col("__exit_time"), F.col(QUALIFIED))).drop("__exit_time"))
        return entered_or_changed.drop("__before").unionByName(left)
    # Combined: a profile is one unit; an audience it left shows exited, one it entered realized.
    base_status = base.select(PROFILE, *[F.col(status_column(a)).alias(f"__b_{a}") for a in dest.audiences])
    out = entered_or_changed.drop("__before").join(base_status, PROFILE, "left")
    for a in dest.audiences:
        out = out.withColumn(status_column(a), F.when(F.col(status_column(a)).isNotNull(), F.when(
            F.col(f"__b_{a}").isNull(), F.lit("realized")).otherwise(F.lit("existing")))
            .when(F.col(f"__b_{a}").isNotNull(), F.lit(EXITED))).drop(f"__b_{a}")
    gone = base.join(today.select(PROFILE), PROFILE, "left_anti")
    for a in dest.audiences:
        gone = gone.withColumn(status_column(a), F.when(F.col(status_column(a)).isNotNull(), F.lit(EXITED)))
    return out.unionByName(gone)


def transform_exclusions(units: DataFrame, dest: FileDestination, ctx: MappingContext) -> DataFrame:
    """``units`` with ``__excluded``: the first reason a unit is not exported, or null (see the module doc)."""
    identifying = [value_column(i) for i, m in enumerate(dest.mapping) if ctx.identifies(m)]
    required = [value_column(i) for i, m in enumerate(dest.mapping) if m.required]

    def empty(name: str) -> Column:
        column = F.col(name)
        as_text = column.cast("string") if not isinstance(units.schema[name].dataType, T.ArrayType | T.MapType
                                                           | T.StructType) else F.to_json(column)
        return column.isNull() | (F.trim(as_text) == "")

    pre: Column = F.lit(None).cast("string")
    if required:
        missing = F.lit(False)
        for name in required:
            missing = missing | empty(name)
        pre = F.when(missing, F.lit(MISSING_MANDATORY))
    if identifying:
        nobody = F.lit(True)
        for name in identifying:
            nobody = nobody & empty(name)
        pre = F.when(nobody, F.lit(NO_IDENTITY)).otherwise(pre)
    if dest.consent:
        pre = F.when(~F.col(CONSENTED), F.lit(CONSENT)).otherwise(pre)
    out = units.withColumn("__pre", pre)
    if dest.deduplication is None:
        return out.withColumnRenamed("__pre", REASON)
    # A row excluded for a missing identity or field never wins a deduplication over one that is exported.
    return _dedup_after(out, dest)


def _dedup_key(dest: FileDestination) -> Column:
    dedup = dest.deduplication
    assert dedup is not None
    if dedup.namespace is not None:
        values = F.array_sort(F.coalesce(F.col("__dedup_identities"), F.array().cast(T.ArrayType(T.StringType()))))
        joined = F.array_join(values, IDENTITY_SEPARATOR)
        return F.when(joined != "", joined)
    parts = [F.col(f"__dedup_{i}").cast("string") for i in range(len(dedup.attributes or []))]
    return F.when(~F.exists(F.array(*parts), lambda x: x.isNull()), F.to_json(F.array(*parts)))


def _dedup_after(units: DataFrame, dest: FileDestination) -> DataFrame:
    """Deduplicate among the units not already excluded, then drop the helper columns."""
    key = _dedup_key(dest)
    group = [AUDIENCE] if dest.layout == "per_audience" else []
    eligible = F.col("__pre").isNull() & key.isNotNull()
    order = Window.partitionBy(*group, eligible.alias("__eligible"), key.alias("__key")).orderBy(
        F.col(QUALIFIED).desc_nulls_last(), PROFILE)
    reason = F.coalesce(F.col("__pre"), F.when(eligible & (F.row_number().over(order) > 1), F.lit(DEDUPLICATED)))
    helpers = [c for c in units.columns if c.startswith("__dedup_")]
    return units.withColumn(REASON, reason).drop("__pre", *helpers)


def dedup_columns(dest: FileDestination) -> list[Column]:
    """Profile columns the deduplication key needs, named ``__dedup_*`` (selected beside the mapped values)."""
    dedup = dest.deduplication
    if dedup is None:
        return []
    if dedup.namespace is not None:
        return [F.col("identities").getItem(dedup.namespace).alias("__dedup_identities")]
    return [F.col(name).alias(f"__dedup_{i}") for i, name in enumerate(dedup.attributes or [])]


def transform_protect_formulas(df: DataFrame, names: Sequence[str]) -> DataFrame:
    """CSV formula injection made inert: a text value starting with =, +, -, @, tab or CR gets a leading
    apostrophe, unless it is an E.164 phone number. Only string columns are touched (numbers stay numbers)."""
    out = df
    for name in names:
        if isinstance(df.schema[name].dataType, T.StringType):
            column = F.col(name)
            out = out.withColumn(name, F.when(column.rlike(FORMULA_START) & ~column.rlike(E164),
                                              F.concat(F.lit("'"), column)).otherwise(column))
    return out


def exclusion_metrics() -> list[Column]:
    """The aggregates of :func:`exclusion_counts` (also observed during a write: see ``DataFrame.observe``)."""
    return [F.count(F.lit(1)).alias("received"), F.count_if(F.col(REASON).isNull()).alias("activated"),
            *[F.count_if(F.col(REASON) == F.lit(reason)).alias(f"excluded_{reason}") for reason in EXCLUSION_REASONS]]


def exclusion_counts_of(values: Mapping[str, object]) -> dict[str, int]:
    """``received``, ``activated`` and ``excluded.<reason>`` from the values of :func:`exclusion_metrics`."""
    out = {"received": int(values.get("received") or 0), "activated": int(values.get("activated") or 0)}  # type: ignore[call-overload]
    out.update({f"excluded.{reason}": int(values.get(f"excluded_{reason}") or 0)  # type: ignore[call-overload]
                for reason in EXCLUSION_REASONS})
    return out


def exclusion_counts(units: DataFrame) -> dict[str, int]:
    """``received``, ``activated`` and ``excluded.<reason>`` of units carrying ``__excluded``."""
    row = units.agg(*exclusion_metrics()).first()
    return exclusion_counts_of({} if row is None else row.asDict())


def evaluation_stamp(run_date: dt.date) -> dt.datetime:
    """The time file-name macros render for a run date: its start (UTC), so a re-run names files the same."""
    return dt.datetime.combine(run_date, dt.time(0), tzinfo=dt.UTC)
