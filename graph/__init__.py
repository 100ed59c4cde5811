"""HTTP and GraphQL face of usage-events: the Starlette app, the schema, the CLI."""
