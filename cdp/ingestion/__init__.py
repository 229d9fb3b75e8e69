"""Landed files in, validated records out: landing, formats, record checks and the batch ledger."""
