"""Helpers shared by the test tiers (real models made with torch, tree snapshots)."""
