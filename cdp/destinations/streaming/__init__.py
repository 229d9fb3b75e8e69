"""Streaming destinations (http, kafka, kinesis): one JSON message per changed profile, delivered from Spark's
executors with a delivery ledger that marks a change delivered only once the endpoint acknowledged it.

Seams: :mod:`.changes` (which profiles changed, the message), :mod:`.delivery` (batching, rate limit,
retries, journal), one sender per type (:mod:`.http`, :mod:`.kafka`, :mod:`.kinesis`), :mod:`.ledger`
(delivery ledger, failed records) and :mod:`.export` (one run, called by ``jobs/export.py``).
"""
