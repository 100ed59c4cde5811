"""The GraphiQL page, opened on a query that explains how to send the API key."""

from functools import lru_cache

from strawberry.http.ides import get_graphql_ide_html

WELCOME_QUERY = """# Welcome to usage-events.
#
# Every request needs your API key. Open the "Headers" tab below and paste:
#
#     {"Authorization": "Bearer uek_..."}
#
# (`make run` prints a link that opens this page with the header filled in.)
# Then press the play button (Ctrl-Enter) to run:

query FirstLook {
  viewer { id name }
  customers(first: 5) { totalCount nodes { id externalId name } }
  meters { nodes { id name eventName aggregation { type key } } }
  events(first: 5) { totalCount nodes { eventId eventName timestamp metadata } }
}
"""


@lru_cache(maxsize=1)
def graphiql_page() -> str:
    page = get_graphql_ide_html("graphiql")
    start = page.index("const EXAMPLE_QUERY = `") + len("const EXAMPLE_QUERY = `")
    end = page.index("`;", start)
    return page[:start] + WELCOME_QUERY + page[end:]
