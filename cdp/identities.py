"""Identity values as they are compared, linked and hashed: one normalisation for every step.

Emails are trimmed and lower-cased; phones become E.164 (``+33612345678``) with the ``phonenumbers``
library, numbers without a country code being read in the namespace's ``default_region`` (without one,
only numbers with a country code are valid; the others are dropped as ``invalid_phone``); every other
type is trimmed. Identity resolution also drops the values a namespace blocks
(:func:`transform_normalize_values`), with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pandas as pd
import phonenumbers
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdp.errors import CdpError
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


class PhoneNormalizationError(CdpError):
    """A phone number could not be normalised with its namespace's settings (not a bad value: those are dropped)."""


def phone_region_errors(namespaces: Mapping[str, Namespace]) -> list[str]:
    """One message per phone namespace whose ``default_region`` the phone library does not know.

    Such a region would silently turn every number without a country code into ``invalid_phone``.
    """
    return [f"namespaces.yaml: namespace '{code}': default_region: '{ns.default_region}' is not a region the phone "
            "library knows; use an ISO 3166 code such as FR or US, or remove default_region (numbers with a "
            "country code need none)"
            for code, ns in sorted(namespaces.items())
            if ns.type == "phone" and ns.default_region is not None
            and ns.default_region not in phonenumbers.SUPPORTED_REGIONS]


def e164(raw: str | None, region: str | None) -> tuple[str | None, str | None]:
    """``(E.164 form, None)`` of a phone number, or ``(None, reason)`` when it is empty or not a valid number.

    ``region`` (e.g. ``FR``) reads numbers written without a country code; without it (None) only numbers
    with a country code (``+33 ...``) are valid, the others are ``invalid_phone``.
    """
    text = raw.strip() if isinstance(raw, str) else ""
    if not text:
        return None, EMPTY
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None, INVALID_PHONE
    if not phonenumbers.is_valid_number(number):
        return None, INVALID_PHONE
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None


def _present(value: object) -> str | None:
    """A string cell of an Arrow batch, or None: a null arrives as None or, in a column Arrow typed without a
    string, as NaN (a null ``default_region`` once reached the phone library as the float NaN)."""
    return value if isinstance(value, str) and value else None


def e164_frame(raw: pd.Series, region: pd.Series) -> pd.DataFrame:
    """:func:`e164` over a batch of values: a frame of ``value`` and ``reason``; a null region means none."""
    pairs = [e164(_present(r), _present(g)) for r, g in zip(raw.tolist(), region.tolist(), strict=True)]
    return pd.DataFrame(pairs, columns=["value", "reason"], dtype=object)


def phone_frame(namespace: pd.Series, raw: pd.Series, regions: Mapping[str, str | None]) -> pd.DataFrame:
    """:func:`e164` of each ``raw`` with the ``default_region`` of its ``namespace`` (from ``regions``).

    An unexpected error of the phone library is raised as :class:`PhoneNormalizationError` naming the
    namespace and its ``default_region`` (never the value: it is personal data).
    """
    pairs = []
    for code, text in zip(namespace.tolist(), raw.tolist(), strict=True):
        region = regions.get(code)
        try:
            pairs.append(e164(_present(text), region))
        except Exception as exc:  # re-raised with the namespace and setting that explain it
            raise PhoneNormalizationError(
                f"namespaces.yaml: namespace '{code}': phone normalisation with default_region={region!r} failed "
                f"({type(exc).__name__}: {exc}); check the namespace's default_region (an ISO 3166 code such as "
                "FR, or none)") from exc
    return pd.DataFrame(pairs, columns=["value", "reason"], dtype=object)


def _phone_udf(regions: Mapping[str, str | None]) -> Callable[[Column, Column], Column]:
    """An Arrow-batched UDF ``(namespace, raw) -> (value, reason)`` that knows each namespace's region in Python,
    so that no null region column ever reaches the workers."""
    frozen = dict(regions)

    def normalise(namespace: pd.Series, raw: pd.Series) -> pd.DataFrame:
        return phone_frame(namespace, raw, frozen)
    return F.pandas_udf(normalise, NORMALIZED)  # type: ignore[call-overload]


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
        # An empty string, not a null literal, for "no region": see _present.
        out = _e164_udf(trimmed, F.lit(default_region or ""))["value"]
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
    phone_udf = _phone_udf({code: namespaces[code].default_region for code in phone_codes})
    phones = (values.where(is_phone)
              .withColumn("_n", phone_udf(F.col("namespace"), trimmed))
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
