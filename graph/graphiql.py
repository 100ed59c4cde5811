"""GraphiQL, served whole by the service (SPEC §9): the page and every file it loads.

The page is graphiql.html with graphiql.js inlined. The files it loads are the npm
packages' own, byte for byte, kept in graphiql_assets/ beside their licences and a
manifest of their sha256s; `make graphiql-assets` (scripts/graphiql_assets.py) refreshes
them. Nothing the page needs comes from another origin, so it works without internet.
"""

import base64
import gzip
import hashlib
import json
from dataclasses import dataclass
from functools import cache, cached_property, lru_cache
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route, Router
from starlette.types import ASGIApp

HERE = Path(__file__).parent
ASSET_DIRECTORY = HERE / "graphiql_assets"
ASSET_MOUNT = "/graphql/assets"
MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
# Every asset's path holds its package's version, so a path never changes its bytes.
ASSET_CACHE_CONTROL = "public, max-age=31536000, immutable"

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

# In a <script> element's text, "</script" or "<!--" would end or change it; JSON allows
# the same characters as \u escapes. U+2028 and U+2029 are escaped for older JS parsers.
_HTML_SAFE_JSON = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def json_for_script_element(value: Any) -> str:
    """`value` as JSON that can stand inside any <script> element unchanged."""
    return json.dumps(value, ensure_ascii=False).translate(_HTML_SAFE_JSON)


@dataclass(frozen=True)
class Asset:
    path: str  # Below ASSET_DIRECTORY and below ASSET_MOUNT alike.
    sha256: str

    @property
    def url(self) -> str:
        return f"{ASSET_MOUNT}/{self.path}"

    @property
    def integrity(self) -> str:
        """Subresource Integrity: the browser refuses the file if its bytes differ."""
        return "sha256-" + base64.b64encode(bytes.fromhex(self.sha256)).decode()

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES.get(Path(self.path).suffix, "text/plain; charset=utf-8")


@dataclass(frozen=True)
class AssetManifest:
    page_files: tuple[Asset, ...]  # In the order the page loads them.
    licences: tuple[Asset, ...]

    @classmethod
    def read(cls, directory: Path = ASSET_DIRECTORY) -> "AssetManifest":
        manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
        page_files: list[Asset] = []
        licences: list[Asset] = []
        for package in manifest["packages"]:
            folder = package["directory"]
            for kind, assets in (("files", page_files), ("licences", licences)):
                for item in package[kind]:
                    assets.append(Asset(f"{folder}/{item['path']}", item["sha256"]))
        return cls(tuple(page_files), tuple(licences))

    def by_path(self) -> dict[str, Asset]:
        return {asset.path: asset for asset in (*self.page_files, *self.licences)}


@dataclass(frozen=True)
class GraphiQLPage:
    html: str
    script_hash: str  # The CSP source of the page's one inline script.

    @cached_property
    def content_security_policy(self) -> str:
        # GraphiQL and its editor set inline styles; every script and request stays here.
        return "; ".join(
            [
                "default-src 'none'",
                f"script-src 'self' '{self.script_hash}'",
                "style-src 'self' 'unsafe-inline'",
                "img-src 'self' data:",
                "font-src 'self' data:",
                "connect-src 'self'",
                "base-uri 'none'",
                "form-action 'none'",
                "frame-ancestors 'none'",
            ]
        )


def render_page(welcome_query: str, manifest: AssetManifest) -> GraphiQLPage:
    template = (HERE / "graphiql.html").read_text(encoding="utf-8")
    script = (HERE / "graphiql.js").read_text(encoding="utf-8")
    stylesheets = [asset for asset in manifest.page_files if asset.path.endswith(".css")]
    scripts = [asset for asset in manifest.page_files if asset.path.endswith(".js")]
    values = {
        "stylesheets": "\n".join(
            f'    <link rel="stylesheet" href="{a.url}" integrity="{a.integrity}" />'
            for a in stylesheets
        ),
        "scripts": "\n".join(
            f'    <script src="{a.url}" integrity="{a.integrity}"></script>' for a in scripts
        ),
        "welcome_query": json_for_script_element(welcome_query),
        "page_script": script,
    }
    html = template
    for name, value in values.items():
        html = html.replace("{{" + name + "}}", value)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    return GraphiQLPage(html, f"sha256-{digest}")


@lru_cache(maxsize=1)
def asset_manifest() -> AssetManifest:
    return AssetManifest.read()


@lru_cache(maxsize=1)
def graphiql_page() -> GraphiQLPage:
    return render_page(WELCOME_QUERY, asset_manifest())


@cache
def gzipped(asset: Asset) -> bytes:
    """An asset compressed once per process: graphiql.min.js is 3.5 MB, 0.7 MB gzipped, and
    compressing it for every browser that fetches it would hold up the event loop."""
    return gzip.compress((ASSET_DIRECTORY / asset.path).read_bytes(), compresslevel=6, mtime=0)


def graphiql_response() -> HTMLResponse:
    page = graphiql_page()
    return HTMLResponse(
        page.html,
        headers={
            "Content-Security-Policy": page.content_security_policy,
            # The address may hold the API key (?headers=…): it is never sent on as a referrer.
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-cache",
        },
    )


def graphiql_assets_app() -> ASGIApp:
    """The files of the manifest under ASSET_MOUNT, and nothing else of the folder."""
    assets = asset_manifest().by_path()

    async def serve(request: Request) -> Response:
        asset = assets.get(request.path_params["path"])
        if asset is None:
            return PlainTextResponse("Not found", status_code=404)
        headers = {
            "Cache-Control": ASSET_CACHE_CONTROL,
            "X-Content-Type-Options": "nosniff",
            "Vary": "Accept-Encoding",
        }
        if "gzip" in request.headers.get("accept-encoding", ""):
            headers["Content-Encoding"] = "gzip"
            return Response(gzipped(asset), media_type=asset.media_type, headers=headers)
        return FileResponse(
            ASSET_DIRECTORY / asset.path, media_type=asset.media_type, headers=headers
        )

    return Router(routes=[Route("/{path:path}", serve, methods=["GET"])])
