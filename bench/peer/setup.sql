-- Run by bench/peer_run.py in the throw-away benchmark database only (never in a real one),
-- after seeding and before PostGraphile starts and introspects `public`.

-- Query 4 (event name + the last 24 hours): PostGraphile 5's core has no range filter on
-- a connection, so the range is a set-returning SQL function, exposed as the query field
-- benchEventsInRange. It is a single STABLE SQL SELECT, which PostgreSQL inlines into
-- PostGraphile's outer query: the ORDER BY and LIMIT PostGraphile adds are then read
-- from the (business_id, event_name, timestamp, sequence) index, as for the service. Its
-- WHERE is the service's for events(filter: {eventName, start, end}): start inclusive, end
-- exclusive, not deprecated, counted.
CREATE FUNCTION bench_events_in_range(
    business_id text, event_name text, start_at timestamptz, end_at timestamptz
) RETURNS SETOF events LANGUAGE sql STABLE AS $$
    SELECT *
    FROM events AS e
    WHERE e.business_id = $1
      AND e.event_name = $2
      AND e."timestamp" >= $3
      AND e."timestamp" < $4
      AND e.deprecated_at IS NULL
      AND e.counted_from IS NOT NULL
$$;

-- orderBy on the function's connection (Amber has no @sortable; this is its behaviour).
COMMENT ON FUNCTION bench_events_in_range(text, text, timestamptz, timestamptz)
    IS E'@behavior +orderBy +order';

-- PostGraphile 5 offers `condition` only on indexed columns; deprecated_at is not indexed.
-- With this, allEvents(condition: {deprecatedAt: null}) adds `deprecated_at IS NULL`, as
-- the service's listing does.
COMMENT ON COLUMN events.deprecated_at IS E'@behavior +filterBy';
