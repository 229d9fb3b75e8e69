"""Consent: a destination's purposes resolved to the profile attributes that hold each person's choice.

A purpose (``marketing.email``) is declared in ``governance.consent_purposes`` with a boolean profile attribute
(``consent_marketing``, or a dotted path such as ``consents.marketing.email``), merged like any attribute. A
destination with ``consent: [purposes]`` delivers a profile only when every one of those attributes is true;
false or missing (null) is no consent, and the profile is excluded with reason ``consent``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pyspark.sql import Column
from pyspark.sql import functions as F

from cdp.workspace.workspace import Workspace

CONSENT = "consent"


def purpose_attributes(ws: Workspace) -> dict[str, str]:
    """Purpose -> the profile attribute (dotted path) that holds it."""
    return {name: p.attribute for name, p in ws.config.governance.consent_purposes.items()}


def consent_column(purposes: Sequence[str], attributes: Mapping[str, str]) -> Column:
    """True when a profile row (a row of the profiles table) consented to every purpose; never null.

    A destination without purposes needs no consent: always true.
    """
    granted: Column = F.lit(True)
    for purpose in purposes:
        granted = granted & F.coalesce(F.col(attributes[purpose]).cast("boolean"), F.lit(False))
    return granted
