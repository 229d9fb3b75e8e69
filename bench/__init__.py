"""Benchmarks (`make bench`): speed and memory measured on this machine, never asserted in tests."""
