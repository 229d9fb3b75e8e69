"""Identity values as they are compared, linked and hashed: one normalisation for every step.

Emails are trimmed and lower-cased; phones become E.164 (``+33612345678``) with the ``phonenumbers``
library, numbers without a country code being read in the namespace's ``default_region``; every other
type is trimmed. Identity resolution also drops the values a namespace blocks
(:func:`transform_normalize_values`), with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import phonenumbers
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdp.workspace.models import Namespace

# Why a value is not linked (the ``<reason>`` of the resolution metric ``dropped.<namespace>.<reason>``).
EMPTY = "empty"
INVALID_PHONE = "invalid_phone"
BLOCKED_VALUE = "blocked_value"
BLOCKED_PATTERN = "blocked_pattern"

NORMALIZED = T.StructType([
    T.StructField("value", T.StringType(), True),
    T.StructField("reason", T.StringType(), True),
])


def e164(raw: str | None, region: str | None) -> tuple[str | None, str | None]:
    """``(E.164 form, None)`` of a phone number, or ``(None, reason)`` when it is empty or not a valid number.

    ``region`` (e.g. ``FR``) reads numbers written without a country code; without it they are invalid.
    """
    text = (raw or "").strip()
    if not text:
        return None, EMPTY
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None, INVALID_PHONE
    if not phonenumbers.is_valid_number(number):
        return None, INVALID_PHONE
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None


def e164_frame(raw: pd.Series, region: pd.Series) -> pd.DataFrame:
    """:func:`e164` over a batch of values: a frame of ``value`` and ``reason``."""
    pairs = [e164(r, g) for r, g in zip(raw.tolist(), region.tolist(), strict=True)]
    return pd.DataFrame(pairs, columns=["value", "reason"], dtype=object)


# An Arrow-batched UDF: the Python worker parses a batch of values per call, not one value per call.
_e164_udf = F.pandas_udf(e164_frame, NORMALIZED)  # type: ignore[call-overload]


def normalize(namespace_type: str, value: Column, default_region: str | None = None) -> Column:
    """The comparable form of an identity value of a namespace type; null when it is not an identity.

    Emails are trimmed and lower-cased; phones become E.164 (null when not a valid number, see
    :func:`e164`); every other type is trimmed. An empty result is null.
    """
    trimmed = F.trim(value)
    if namespace_type == "email":
        out = F.lower(trimmed)
    elif namespace_type == "phone":
        out = _e164_udf(trimmed, F.lit(default_region).cast(T.StringType()))["value"]
    else:
        out = trimmed
    return F.when(out == "", F.lit(None)).otherwise(out)


def _blocked(ns: Namespace, value: Column, trimmed: Column) -> Column:
    """The reason a normalised value of ``ns`` is blocked, or null."""
    reason = F.lit(None).cast(T.StringType())
    if ns.blocked_patterns:
        found = F.lit(False)
        for pattern in ns.blocked_patterns:
            found = found | value.rlike(pattern)
        reason = F.when(found, F.lit(BLOCKED_PATTERN)).otherwise(reason)
    if ns.blocked_values:
        # Listed in normalised form or as written (a phone may be listed as "0600000000").
        listed = sorted({v.strip().lower() if ns.type == "email" else v.strip() for v in ns.blocked_values})
        hit = value.isin(listed) | trimmed.isin(listed)
        reason = F.when(hit, F.lit(BLOCKED_VALUE)).otherwise(reason)
    return reason


def transform_normalize_values(values: DataFrame, namespaces: Mapping[str, Namespace]) -> DataFrame:
    """Normalise distinct ``(namespace, raw)`` values: adds ``value`` (null when dropped) and ``reason``.

    Call it on *distinct* values: phones go through an Arrow UDF once per distinct value, not once per
    record. The reason is the first that applies: ``empty``, ``invalid_phone``, ``blocked_value``,
    ``blocked_pattern``; it is null for a value that is linked. Namespaces not in ``namespaces`` are
    trimmed only.
    """
    phone_codes = sorted(code for code, ns in namespaces.items() if ns.type == "phone")
    is_phone = F.col("namespace").isin(phone_codes) if phone_codes else F.lit(False)
    trimmed = F.trim(F.col("raw"))

    # Phones: E.164 through the UDF, on their own rows so that the UDF never sees the other values.
    regions = [x for code in phone_codes for x in (F.lit(code), F.lit(namespaces[code].default_region))]
    region = F.create_map(*regions)[F.col("namespace")] if regions else F.lit(None)
    phones = (values.where(is_phone)
              .withColumn("_n", _e164_udf(trimmed, region.cast(T.StringType())))
              .select("namespace", "raw", F.col("_n.value").alias("value"), F.col("_n.reason").alias("reason")))
    # Every other type: Spark expressions.
    lowered = {code for code, ns in namespaces.items() if ns.type == "email"}
    plain = F.when(F.col("namespace").isin(sorted(lowered)), F.lower(trimmed)).otherwise(trimmed) \
        if lowered else trimmed
    others = (values.where(~is_phone)
              .select("namespace", "raw", plain.alias("value"))
              .select("namespace", "raw",
                      F.when(F.col("value") == "", F.lit(None)).otherwise(F.col("value")).alias("value"),
                      F.when(F.col("value") == "", F.lit(EMPTY)).alias("reason")))
    both = phones.unionByName(others)

    blocked: Column = F.lit(None).cast(T.StringType())
    for code in sorted(namespaces):
        ns = namespaces[code]
        if ns.blocked_values or ns.blocked_patterns:
            blocked = F.when(F.col("namespace") == code, _blocked(ns, F.col("value"), F.trim(F.col("raw")))) \
                .otherwise(blocked)
    reason = F.coalesce(F.col("reason"), blocked)
    return both.select("namespace", "raw", F.when(reason.isNull(), F.col("value")).alias("value"),
                       reason.alias("reason"))
