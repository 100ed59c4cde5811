"""GraphQL object types; each is built from a db record inside the request."""
