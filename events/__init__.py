"""Typed events, the publishing SDK, topic administration and demo data."""
