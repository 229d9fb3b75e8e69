"""Identity values as they are compared, linked and hashed: one normalisation for every step."""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F


def normalize(namespace_type: str, value: Column) -> Column:
    """The comparable form of an identity value of a namespace type.

    Emails are trimmed and lower-cased; phones keep a leading + and their digits; every other
    type is trimmed. An empty result is null (not an identity).
    """
    trimmed = F.trim(value)
    if namespace_type == "email":
        out = F.lower(trimmed)
    elif namespace_type == "phone":
        digits = F.regexp_replace(trimmed, r"[^0-9]", "")
        out = F.when(trimmed.startswith("+"), F.concat(F.lit("+"), digits)).otherwise(digits)
    else:
        out = trimmed
    return F.when(out == "", F.lit(None)).otherwise(out)
