"""Which profiles changed for a streaming destination, and the message each one gets.

A streaming destination receives one JSON message per profile whose *state* changed since its last
acknowledged delivery (``docs/schemas/profile_change.schema.json``). The state of a profile for a
destination is what a message carries: its mapped attributes (compared by value), its identity map (the
mapped namespaces, hashed where configured) and the set of mapped audiences it is a member of. Its
``__signature`` (SHA-256 of that state) is kept in the delivery ledger with every acknowledged message, so:

- a profile whose signature differs from the one last acknowledged (or that was never delivered) is a
  change; the first run of a destination therefore back-fills every current member;
- a profile that was delivered as a member and no longer is gets its exit (``exited``), with the values it
  was last delivered with when the profile itself is gone;
- a full resync sends every candidate, whatever was acknowledged;
- with consent purposes (``consent:``), a profile that has not consented to all of them is no member for the
  destination: never delivered, it is excluded with reason ``consent``; delivered before, it gets one last
  message that exits it from every mapped audience, carrying only the values it was last delivered with
  (nothing new is disclosed), and nothing more until it consents again (then it is sent as it is that day).

The message id is the SHA-256 of the destination, the profile id, the signature last acknowledged and
the new one: the same change always has the same id, so a re-send after a timeout or a killed task
carries the id a receiver needs to drop the duplicate. Everything here is pure ``DataFrame -> DataFrame``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdp.destinations.rows import MEMBER_STATUSES, MISSING_MANDATORY, NO_IDENTITY, MappingContext, mapped_value
from cdp.governance.consent import CONSENT, consent_column
from cdp.workspace.models import MappedField, StreamingDestination

STREAMING_EXCLUSION_REASONS = (CONSENT, NO_IDENTITY, MISSING_MANDATORY)
QUALIFIED_FORMAT = "yyyy-MM-dd'T'HH:mm:ss'Z'"
# Columns of the changes frame (see transform_changes).
PROFILE = "profile_id"
MESSAGE_ID = "message_id"
SIGNATURE = "signature"
STATE_JSON = "state_json"
MEMBERSHIPS = "memberships"
PAYLOAD = "payload"
REASON = "excluded"
PREVIOUS_SIGNATURE = "previous_signature"
PREVIOUS_MEMBERSHIPS = "previous_memberships"

MEMBERSHIP_MAP = T.MapType(T.StringType(), T.TimestampType(), True)
IDENTITY_VALUES = T.ArrayType(T.StructType([T.StructField("id", T.StringType(), False)]), False)
# The state of one profile as last acknowledged: what transform_changes reads from the delivery ledger.
ACKNOWLEDGED_STATE = T.StructType([
    T.StructField(PROFILE, T.StringType(), False),
    T.StructField(SIGNATURE, T.StringType(), False),
    T.StructField(STATE_JSON, T.StringType(), True),
    T.StructField(MEMBERSHIPS, MEMBERSHIP_MAP, True),
])


@dataclass(frozen=True)
class RunInfo:
    """What every message of a run names besides the profile: destination, run date and run id."""

    destination: str
    run_date: dt.date
    run_id: str
    resync: bool = False


def _attribute_fields(dest: StreamingDestination) -> list[tuple[int, MappedField]]:
    return [(i, m) for i, m in enumerate(dest.mapping) if m.namespace is None]


def _identity_fields(dest: StreamingDestination) -> list[tuple[int, MappedField]]:
    return [(i, m) for i, m in enumerate(dest.mapping) if m.namespace is not None]


def state_column(dest: StreamingDestination, ctx: MappingContext) -> Column:
    """The state struct of a profile row: ``attributes`` (mapped names) and ``identityMap`` (namespace header ->
    ``[{"id": value}]``, namespaces without a value left out)."""
    attributes = [mapped_value(m, ctx).alias(m.header) for _, m in _attribute_fields(dest)]
    identity_entries: list[Column] = []
    for _, m in _identity_fields(dest):
        values = mapped_value(m, ctx)  # a sorted array of values, null when there is none
        identity_entries += [F.lit(m.header), F.transform(values, lambda v: F.struct(v.alias("id")))]
    if identity_entries:
        identity_map = F.map_filter(F.create_map(*identity_entries), lambda _k, v: v.isNotNull())
    else:
        identity_map = F.create_map().cast(T.MapType(T.StringType(), IDENTITY_VALUES))
    attribute_struct = F.struct(*attributes) if attributes else F.struct(F.lit(None).cast("string").alias("_"))
    return F.struct(attribute_struct.alias("attributes"), identity_map.alias("identityMap"))


def _members(members: DataFrame, dest: StreamingDestination, statuses: tuple[str, ...]) -> DataFrame:
    """profile_id -> map audience -> last qualification time, of the mapped audiences in ``statuses``."""
    kept = members.where(F.col("status").isin(*statuses) & F.col("audience_id").isin(*dest.audiences))
    return kept.groupBy(PROFILE).agg(F.map_from_entries(F.array_sort(F.collect_list(
        F.struct("audience_id", "last_qualification_time")))).alias("__map"))


def _json(column: Column) -> Column:
    # Null attributes are written as null, not left out: a receiver sees that a value was removed.
    return F.to_json(column, {"ignoreNullFields": "false"})


def transform_changes(members: DataFrame, profiles: DataFrame, acknowledged: DataFrame, dest: StreamingDestination,
                      ctx: MappingContext, run: RunInfo) -> DataFrame:
    """The changes of one run: one row per profile to message, with its exclusion reason (or null).

    ``members``: the run date's audience_membership rows; ``profiles``: the run date's profiles;
    ``acknowledged``: the state last acknowledged per profile (:data:`ACKNOWLEDGED_STATE`, the delivery ledger
    before the run date). Columns: profile_id, message_id, signature, previous_signature, state_json,
    memberships (the mapped audiences the receiver will know the profile in, with their qualification time),
    previous_memberships (those it knows now), payload (the message, a JSON string) and excluded
    (``consent`` / ``no_identity`` / ``missing_mandatory`` or null).
    """
    state_type = profiles.select(state_column(dest, ctx).alias("s")).schema["s"].dataType
    assert isinstance(state_type, T.StructType)
    now = _members(members, dest, MEMBER_STATUSES).withColumnRenamed("__map", "__now")
    exits = _members(members, dest, ("exited",)).withColumnRenamed("__map", "__exit")
    current = profiles.select(F.col(PROFILE), state_column(dest, ctx).alias("__state"),
                              consent_column(dest.consent, ctx.consent_attributes).alias("__consented"))
    before = acknowledged.select(F.col(PROFILE), F.col(SIGNATURE).alias(PREVIOUS_SIGNATURE),
                                 F.col(STATE_JSON).alias("__before_state"), F.col(MEMBERSHIPS).alias("__before"))
    # Candidates: today's members, and the profiles the receiver knows in a mapped audience (they may have left).
    known = before.where(F.size(F.coalesce(F.col("__before"), F.create_map())) > 0).select(PROFILE)
    candidates = now.select(PROFILE).unionByName(known).distinct()
    empty = F.create_map().cast(MEMBERSHIP_MAP)
    # A profile of the run date without consent to every purpose (a profile that is gone keeps its exit as before).
    withdrawn = (F.col("__state").isNotNull() & ~F.col("__consented")) if dest.consent else F.lit(False)
    joined = (candidates.join(now, PROFILE, "left").join(exits, PROFILE, "left").join(current, PROFILE, "left")
              .join(before, PROFILE, "left")
              .withColumn("__withdrawn", withdrawn)
              .withColumn("__now", F.when(F.col("__withdrawn"), empty).otherwise(F.coalesce(F.col("__now"), empty)))
              .withColumn("__before", F.coalesce(F.col("__before"), empty)))
    # A profile that no longer exists keeps the values it was last delivered with (its exit must say who left);
    # so does one without consent (its exit discloses nothing new).
    before_state = F.from_json(F.col("__before_state"), state_type)
    state = F.when(F.col("__withdrawn") & F.col("__before_state").isNotNull(), before_state).otherwise(
        F.coalesce(F.col("__state"), before_state))
    state_json = _json(state)
    audiences_now = F.array_sort(F.map_keys(F.col("__now")))
    # Without consent the signature differs from any consented state, so that consenting again is a change.
    no_consent = F.when(F.col("__withdrawn"), F.lit("no_consent"))
    signature = F.sha2(F.concat_ws("|", F.coalesce(state_json, F.lit("")), F.to_json(audiences_now), no_consent),
                       256)
    stamp = F.lit(run.run_date.isoformat()) if run.resync else F.lit("")
    message_id = F.sha2(F.concat_ws("|", F.lit(run.destination), F.col(PROFILE),
                                    F.coalesce(F.col(PREVIOUS_SIGNATURE), F.lit("")), F.col(SIGNATURE), stamp), 256)
    with_state = joined.withColumn("__state_final", state).withColumn(STATE_JSON, state_json).withColumn(
        SIGNATURE, signature)
    changed = with_state if run.resync else with_state.where(
        F.col(PREVIOUS_SIGNATURE).isNull() | (F.col(PREVIOUS_SIGNATURE) != F.col(SIGNATURE)))
    entered_or_stayed = F.transform_values(F.col("__now"), lambda k, v: F.struct(
        F.when(F.map_contains_key(F.col("__before"), k), F.lit("existing")).otherwise(F.lit("realized"))
        .alias("status"), F.date_format(v, QUALIFIED_FORMAT).alias("lastQualificationTime")))
    left = F.transform_values(
        F.map_filter(F.col("__before"), lambda k, _v: ~F.map_contains_key(F.col("__now"), k)),
        lambda k, v: F.struct(F.lit("exited").alias("status"), F.date_format(
            F.coalesce(F.try_element_at(F.coalesce(F.col("__exit"), empty), k), v), QUALIFIED_FORMAT
        ).alias("lastQualificationTime")))
    membership = F.map_concat(entered_or_stayed, left)
    payload = _json(F.struct(
        F.col(MESSAGE_ID).alias("messageId"), F.col(PROFILE).alias("profileId"),
        F.lit(run.destination).alias("destination"), F.lit(run.run_date.isoformat()).alias("runDate"),
        F.lit(run.run_id).alias("runId"), F.col("__state_final.attributes").alias("attributes"),
        F.col("__state_final.identityMap").alias("identityMap"), membership.alias("segmentMembership")))
    out = (changed.withColumn(MESSAGE_ID, message_id).withColumn(PAYLOAD, payload)
           .withColumn(REASON, _exclusion(dest, ctx)).withColumn(MEMBERSHIPS, F.col("__now"))
           .withColumn(PREVIOUS_MEMBERSHIPS, F.col("__before")))
    return out.select(PROFILE, MESSAGE_ID, SIGNATURE, PREVIOUS_SIGNATURE, STATE_JSON, MEMBERSHIPS,
                      PREVIOUS_MEMBERSHIPS, PAYLOAD, REASON)


def _exclusion(dest: StreamingDestination, ctx: MappingContext) -> Column:
    """``no_identity`` when no mapped field that identifies a person has a value, ``missing_mandatory`` when a
    ``required`` one is empty, else null (the same reasons as the file destinations)."""

    def has_value(m: MappedField) -> Column:
        if m.namespace is not None:
            return F.map_contains_key(F.col("__state_final.identityMap"), m.header)
        value = F.col("__state_final.attributes").getField(m.header)
        return value.isNotNull() & (F.trim(value.cast("string")) != "")

    identifying = [has_value(m) for m in dest.mapping if ctx.identifies(m)]
    required = [has_value(m) for m in dest.mapping if m.required]
    reason: Column = F.lit(None).cast("string")
    # Checked last so that it wins: a profile the receiver never got and that did not consent is never sent.
    never_delivered_without_consent = F.col("__withdrawn") & (F.size(F.col("__before")) == 0)
    if required:
        complete = F.lit(True)
        for present in required:
            complete = complete & present
        reason = F.when(~complete, F.lit(MISSING_MANDATORY)).otherwise(reason)
    if identifying:
        anyone = F.lit(False)
        for present in identifying:
            anyone = anyone | present
        reason = F.when(~anyone, F.lit(NO_IDENTITY)).otherwise(reason)
    return F.when(never_delivered_without_consent, F.lit(CONSENT)).otherwise(reason)
