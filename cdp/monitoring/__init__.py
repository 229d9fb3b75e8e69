"""Monitoring: what the Activation dashboard reads (aggregates of the lake) and how it masks what it shows."""
