"""Tuning instance counts and dynamic batching on a real server: search, measurement, report, apply."""
