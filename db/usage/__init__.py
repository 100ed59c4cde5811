"""Meter usage and event volume (SPEC §14, §15): buckets, exact decimals, the reference."""
