"""meterUsage and eventVolume in GraphQL (SPEC §14, §15)."""
