"""The project's benchmark (SPEC §13, issue 5): `python -m bench run` / `make bench`.

Modules:

- `config`        sizes and durations of `make bench` and `make bench-quick`
- `workload`      the synthetic data set and every request body the scenarios send
- `databases`     a throw-away SQLite file or PostgreSQL database per run
- `seed`          bulk seeding of the real tables (customers, keys and meters via repositories)
- `floor_app`     the plain Starlette JSON "floor" server (same repository queries)
- `servers`       starting and stopping server processes, and their memory
- `wrk`           the wrk load generator and its Lua script
- `ingest_client` the multi-connection Python load generator for ingestion
- `ingest_floor`  the ingest floor: bare-driver writes + graphql-core alone
- `scenarios`     the scenarios of SPEC §13 and the scale checks of issue 5
- `report`        rich tables, JSON results, and the Markdown for BENCHMARKS.md
"""
