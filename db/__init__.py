"""Persistence and rules of usage-events: tables, repositories, validation, settings."""
