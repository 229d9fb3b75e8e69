"""Reason codes of quarantined records and statuses of the batch ledger (stable strings: dashboards key on them).

Every landed record either passes every check and goes to ``staging/<dataset>`` typed by its
schema, or goes to the quarantine table with *all* the reasons that apply. The batch ledger gets
one row per landed file so that rows read = rows valid + rows quarantined can be reconciled.

Reason codes are stable strings (dashboards and alerts key on them):

==================== ======= ===========================================================
code                 field   when
==================== ======= ===========================================================
malformed_record     -       unparsable JSON line, JSON that is not an object, wrong CSV
                             column count, CSV quoted field never closed (the only reason such a
                             record gets; a CSV record may span lines, RFC 4180)
bad_header           -       every record of a CSV file whose header line does not match the
                             schema (a required field missing, a column that is no declared field
                             unless csv.unknown_columns: ignore, a column twice): a file landed
                             without its header is quarantined whole, its first line included
invalid_encoding     -       a line of a text file holding bytes that are not valid UTF-8 (never
                             ingested with U+FFFD in place of what was sent)
file_unreadable      -       a Parquet file that cannot be read (one row, no row number)
duplicate_file       -       a file whose content (sha256) was already ingested by another run
                             date, or is landed twice in one run (one row, no row number; its
                             records are not read)
missing_required     yes     a required field (or a profile's primary identity) is absent
wrong_type           yes     a value that does not cast to the declared type; NaN and Infinity
                             are not numbers
number_overflow      yes     a well-formed integer / long / decimal outside the type's range
not_in_enum          yes     a value outside the declared enumeration
bad_format           yes     an email / phone / uri that does not look like one
future_timestamp     yes     the schema's timestamp_field later than the end of the run day
                             plus guardrails.max_future_skew_minutes
bad_identity_format  yes     a normalised identity value that does not fully match its
                             namespace's ``pattern`` (an ECID is 38 digits)
blocked_identity     yes     an identity value listed in guardrails.blocked_identity_values
                             or fully matching one of guardrails.blocked_patterns
identity_too_long    yes     an identity value longer than guardrails.max_identity_length
==================== ======= ===========================================================

An identity value that is blocked, too long or not of its namespace's pattern is dropped from the
record (the field is stored null and counted in the metrics ``identities_dropped.<code>`` and the
ledger's ``identities_dropped``): the record is quarantined for it only when no valid identity
remains, or when it is a profile record's primary identity (the key it is stored under).

==================== ======= ===========================================================
code                 field   when
==================== ======= ===========================================================
no_identity          -       none of the schema's identity fields has a value
too_many_identities  -       more identity values than guardrails.max_identities_per_record
record_too_large     -       the raw record (UTF-8 bytes of the line; a Parquet row as JSON)
                             over guardrails.max_event_bytes / max_profile_record_bytes
duplicate_event_id   yes     an event id seen earlier in the same batch, or already stored in
                             the dataset table by an earlier batch date
==================== ======= ===========================================================

A value that is null or only whitespace counts as absent everywhere (CSV has no other way to
say "no value", and JSON producers often send ``""`` for it).
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


# Reason codes.
MALFORMED_RECORD = "malformed_record"
FILE_UNREADABLE = "file_unreadable"
MISSING_REQUIRED = "missing_required"
WRONG_TYPE = "wrong_type"
NOT_IN_ENUM = "not_in_enum"
BAD_FORMAT = "bad_format"
NO_IDENTITY = "no_identity"
BLOCKED_IDENTITY = "blocked_identity"
IDENTITY_TOO_LONG = "identity_too_long"
DUPLICATE_EVENT_ID = "duplicate_event_id"
NUMBER_OVERFLOW = "number_overflow"
FUTURE_TIMESTAMP = "future_timestamp"
BAD_IDENTITY_FORMAT = "bad_identity_format"
TOO_MANY_IDENTITIES = "too_many_identities"
RECORD_TOO_LARGE = "record_too_large"
DUPLICATE_FILE = "duplicate_file"
BAD_HEADER = "bad_header"
INVALID_ENCODING = "invalid_encoding"

# Ledger statuses.
STATUS_STAGED = "staged"  # the file's valid records are in staging (written by validate)
STATUS_INGESTED = "ingested"  # ... and in the dataset table (set by ingest)
STATUS_OK = "ok"  # written before 'staged' / 'ingested' existed: read as ingested
STATUS_REJECTED = "rejected"
STATUS_UNREADABLE = "unreadable"
STATUS_DUPLICATE = "duplicate"
