"""All SQL of the service. Repositories take the request's session and never commit.

Every repository of a business's rows derives its statements from
`scoped.BusinessScopedRepository`; `businesses.BusinessRepository` is the one unscoped.
"""
