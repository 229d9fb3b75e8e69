"""Masking of personal data shown to operators (quarantine samples on the Activation dashboard).

A quarantined record is shown so that an operator can see *what kind* of value broke it, never whose it was:
e-mail addresses keep their first character, the first character of the domain and the top-level domain
(``ann@example.com`` -> ``a***@e***.com``); phone numbers and every other run of 7 or more digits (which may
be a phone written any way, or a cookie id) keep only their last two digits (``+33 6 12 34 56 78`` ->
``***78``). Dates and timestamps in ISO form are left alone: they say when, not who.
"""

from __future__ import annotations

import re

# Local part and domain as loosely as the records write them (the record failed validation, it may be odd).
_EMAIL = re.compile(r"([^\s@\"',;<>()\[\]{}:]+)@([^\s@\"',;<>()\[\]{}:]+)")
# A digit run, possibly with the separators phone numbers are written with; the ends are digits.
_DIGITS = re.compile(r"\+?\(?\d[\d ()./-]*\d")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
MIN_MASKED_DIGITS = 7


def mask_email(value: str) -> str:
    """``ann@example.com`` -> ``a***@e***.com``; a value without a dot in its domain keeps only ``x***@y***``."""
    local, _, domain = value.partition("@")
    host, dot, tld = domain.rpartition(".")
    if not dot:
        host, tld = domain, ""
    return f"{local[:1]}***@{host[:1]}***{dot}{tld}"


def _mask_digits(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = [c for c in text if c.isdigit()]
    if len(digits) < MIN_MASKED_DIGITS or _ISO_DATE.match(text):
        return text
    return "***" + "".join(digits[-2:])


def mask_raw(text: str) -> str:
    """``text`` (a raw record: a CSV line, a JSON line, a file name) with its e-mails and long digit runs masked."""
    masked = _EMAIL.sub(lambda m: mask_email(m.group(0)), text)
    return _DIGITS.sub(_mask_digits, masked)
