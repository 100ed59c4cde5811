"""Backfills in the GraphQL API (SPEC §16): types, inputs, resolvers and mutations."""
