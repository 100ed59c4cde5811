"""GraphiQL served whole by the service (SPEC §9): the page, its files, their manifest.

What the page does in a browser is tested in tests/e2e/test_graphiql_browser.py; here,
over HTTP, that it names only files of its own origin, that each is served with its bytes
and type, and that the welcome query cannot break out of its element whatever it holds.
"""

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from db.settings import Settings
from graph.app import create_app
from graph.graphiql import (
    ASSET_DIRECTORY,
    WELCOME_QUERY,
    AssetManifest,
    json_for_script_element,
    render_page,
)

ON_THE_SESSION_LOOP = pytest.mark.asyncio(loop_scope="session")


class PageElements(HTMLParser):
    """The page as a browser's parser sees it: its scripts, stylesheets and links."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.script_texts: list[str] = []
        self.links: list[dict[str, str | None]] = []
        self._in_script = False
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts.append(dict(attrs))
            self.script_texts.append("")
            self._in_script = True
        elif tag == "link":
            self.links.append(dict(attrs))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.script_texts[-1] += data

    def welcome_query(self) -> str:
        (index,) = [i for i, s in enumerate(self.scripts) if s.get("id") == "welcome-query"]
        assert self.scripts[index]["type"] == "application/json"
        value: str = json.loads(self.script_texts[index])
        return value


@pytest_asyncio.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The app without a database: GraphiQL's page and files never touch it."""
    app = create_app(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def graphiql(client: httpx.AsyncClient) -> httpx.Response:
    response = await client.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    return response


def sri(data: bytes) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(data).digest()).decode()


@ON_THE_SESSION_LOOP
async def test_page_loads_only_files_of_its_own_origin_each_with_its_bytes(
    client: httpx.AsyncClient,
) -> None:
    page = PageElements((await graphiql(client)).text)

    icons = [link for link in page.links if link["rel"] == "icon"]
    loaded = [(str(s["src"]), s["integrity"]) for s in page.scripts if s.get("src")]
    loaded += [(str(link["href"]), link["integrity"]) for link in page.links if link not in icons]

    assert len(icons) == 1
    assert str(icons[0]["href"]).startswith("data:image/svg+xml,")
    assert len(loaded) == 6  # React, ReactDOM, GraphiQL's script and style, the explorer's.
    for url, integrity in loaded:
        assert url.startswith("/graphql/assets/"), url
        response = await client.get(url)
        assert response.status_code == 200, url
        assert integrity == sri(response.content), url
        expected_type = "text/javascript" if url.endswith(".js") else "text/css"
        assert response.headers["content-type"] == f"{expected_type}; charset=utf-8"
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert response.headers["x-content-type-options"] == "nosniff"


@ON_THE_SESSION_LOOP
async def test_page_needs_no_key_and_opens_on_a_query_that_says_how_to_send_it(
    client: httpx.AsyncClient,
) -> None:
    page = PageElements((await graphiql(client)).text)

    welcome = page.welcome_query()

    assert welcome == WELCOME_QUERY
    assert '{"Authorization": "Bearer uek_..."}' in welcome
    assert "`make run`" in welcome  # The backticks that once broke the page.


@ON_THE_SESSION_LOOP
async def test_page_forbids_every_other_origin_and_allows_its_one_inline_script(
    client: httpx.AsyncClient,
) -> None:
    response = await graphiql(client)
    page = PageElements(response.text)

    policy = dict(
        directive.strip().split(" ", 1)
        for directive in response.headers["content-security-policy"].split(";")
    )
    inline = [
        text
        for script, text in zip(page.scripts, page.script_texts, strict=True)
        if "src" not in script and script.get("type") != "application/json"
    ]

    assert len(inline) == 1
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == f"'self' '{sri(inline[0].encode())}'"
    assert policy["connect-src"] == "'self'"
    assert response.headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize(
    "welcome",
    [
        "</script><script>alert(1)</script>",
        "<!-- <script> `${alert(1)}` \\ \" ' & > \u2028 \u2029 end",
        "# ` backticks ` and ${template} and </SCRIPT >",
    ],
)
def test_welcome_query_is_inserted_as_data_whatever_it_holds(welcome: str) -> None:
    page = PageElements(render_page(welcome, AssetManifest.read()).html)
    reference = PageElements(render_page("{ viewer { id } }", AssetManifest.read()).html)

    assert page.welcome_query() == welcome
    assert page.scripts == reference.scripts  # No element was added or cut short.


def test_json_for_script_element_holds_no_markup_characters() -> None:
    text = json_for_script_element("</script><!-- & \u2028\u2029")

    assert not set(text) & {"<", ">", "&", "\u2028", "\u2029"}
    assert json.loads(text) == "</script><!-- & \u2028\u2029"


@ON_THE_SESSION_LOOP
async def test_files_are_sent_compressed_to_browsers_that_accept_it(
    client: httpx.AsyncClient,
) -> None:
    (script,) = [a for a in AssetManifest.read().page_files if a.path.endswith("graphiql.min.js")]

    response = await client.get(script.url, headers={"Accept-Encoding": "gzip"})

    assert response.headers["content-encoding"] == "gzip"
    assert hashlib.sha256(response.content).hexdigest() == script.sha256  # httpx decoded it.


@ON_THE_SESSION_LOOP
@pytest.mark.parametrize(
    "path",
    [
        "manifest.json",
        "../graphiql.py",
        "..%2Fgraphiql.py",
        "graphiql-3.8.3/",
        "react-18.2.0/umd/react.development.js",
    ],
)
async def test_only_the_files_of_the_manifest_are_served(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(f"/graphql/assets/{path}")

    assert response.status_code == 404


@ON_THE_SESSION_LOOP
async def test_licences_are_served_beside_the_files(client: httpx.AsyncClient) -> None:
    for licence in AssetManifest.read().licences:
        response = await client.get(licence.url)
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        assert "MIT License" in response.text


def test_every_file_of_the_folder_is_in_the_manifest_with_its_sha256() -> None:
    manifest = json.loads((ASSET_DIRECTORY / "manifest.json").read_text(encoding="utf-8"))
    recorded = {}
    for package in manifest["packages"]:
        assert package["licences"], f"{package['name']} has no licence beside it"
        for item in package["files"] + package["licences"]:
            recorded[f"{package['directory']}/{item['path']}"] = item["sha256"]

    on_disk = {
        path.relative_to(ASSET_DIRECTORY).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in ASSET_DIRECTORY.rglob("*")
        if path.is_file() and path.name != "manifest.json"
    }

    assert on_disk == recorded
