"""All SQL of the service. Repositories take the request's session and never commit."""
