"""Monitoring: what the Activation dashboard reads (aggregates of the lake) and how it masks what it shows, and
the warnings a run sends beyond pass / fail on the workspace's alert channels (:mod:`.warnings`)."""
