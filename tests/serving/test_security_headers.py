"""Security headers and the self-hosted API docs: the console, its assets, the API's answers (refusals included) and
`/docs` carry a Content-Security-Policy (scripts from this origin only, no plugins, no <base>, never framed),
`nosniff` and `no-referrer`; `/docs` is Swagger UI from the vendored files, referencing no other host, with a policy
that admits its one inline script by hash and nothing else inline. (The same pages run in a real browser under these
policies in tests/browser/test_console_security.py.)"""

from __future__ import annotations

import base64
import hashlib
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from assistant.settings import Settings

STATIC = Path(__file__).resolve().parents[2] / "serving" / "web" / "static"
ADMIN_KEY = "admin-key-0123456789abcdef"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    from serving.app import create_app

    keys = [{"key": ADMIN_KEY, "name": "ada", "role": "admin"}]
    settings = Settings(data_dir=tmp_path_factory.mktemp("headers"), server={"api_keys": keys})
    # no lifespan (no `with`): these routes need neither the engine nor the database
    return TestClient(create_app(settings), base_url="http://127.0.0.1")


def policy(header: str) -> dict[str, set[str]]:
    """A CSP header as {directive: {sources}}."""
    out: dict[str, set[str]] = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            out[words[0]] = set(words[1:])
    return out


def assert_hardened(headers: dict[str, str] | object, what: str) -> dict[str, set[str]]:
    csp = policy(headers["content-security-policy"])  # type: ignore[index]
    assert csp["script-src"] - {"'self'"} <= {s for s in csp["script-src"] if s.startswith("'sha256-")}, what
    assert "'unsafe-inline'" not in csp["script-src"] and "'unsafe-eval'" not in csp["script-src"], what
    assert csp["object-src"] == {"'none'"} and csp["base-uri"] == {"'none'"}, what
    assert csp["frame-ancestors"] == {"'none'"}, what
    assert csp["default-src"] == {"'self'"} and csp["style-src"] == {"'self'"}, what
    assert headers["x-content-type-options"] == "nosniff", what  # type: ignore[index]
    assert headers["referrer-policy"] == "no-referrer", what  # type: ignore[index]
    return csp


def test_console_assets_and_api_answers_carry_the_headers(client: TestClient) -> None:
    for path in ("/", "/static/app.css", "/static/js/chat.js", "/static/vendor/purify.es.mjs", "/openapi.json"):
        response = client.get(path)
        assert response.status_code == 200, path
        csp = assert_hardened(response.headers, path)
        assert csp["script-src"] == {"'self'"}, path  # only /docs admits an inline script
    assert "javascript" in client.get("/static/vendor/purify.es.mjs").headers["content-type"]  # ES module type
    missing = client.get("/no/such/page")  # an error answer carries them too
    assert missing.status_code == 404
    assert_hardened(missing.headers, "a 404")


def test_the_console_page_has_no_inline_script_or_handler(client: TestClient) -> None:
    """What the console's policy forbids must not be in its page (tests/browser checks the modules at run time)."""
    page = client.get("/").text
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page), "an inline <script> would be refused by the CSP"
    assert not re.search(r"\son[a-z]+\s*=", page), "an inline event handler would be refused by the CSP"
    assert "style=" not in page
    for path in STATIC.rglob("js/*.js"):
        source = path.read_text()
        assert ".innerHTML" not in source or path.name == "chat.js", f"{path.name}: only chat.js sets innerHTML"


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts = 0
        self._in_inline = False
        self.script_text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]
        if tag == "script" and "src" not in values:
            self.inline_scripts += 1
            self._in_inline = True

    def handle_endtag(self, tag: str) -> None:
        self._in_inline = False if tag == "script" else self._in_inline

    def handle_data(self, data: str) -> None:
        if self._in_inline:
            self.script_text.append(data)


def test_api_docs_are_served_from_vendored_files(client: TestClient) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    csp = assert_hardened(docs.headers, "/docs")
    links = _Links()
    links.feed(docs.text)
    assert links.urls and all(u.startswith("/") and not u.startswith("//") for u in links.urls), links.urls
    assert not re.search(r"https?://|//cdn|jsdelivr|unpkg", docs.text), "the docs page names another host"
    assert "validatorUrl" in docs.text  # switched off: its badge would be fetched from validator.swagger.io
    for url in links.urls:  # each asset is the vendored file, served with the headers
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert asset.content == (STATIC / url.removeprefix("/static/")).read_bytes(), url
        assert_hardened(asset.headers, url)
    # the policy admits exactly the page's one inline script (the init call), by its hash
    assert links.inline_scripts == 1
    digest = base64.b64encode(hashlib.sha256("".join(links.script_text).encode()).digest()).decode()
    assert csp["script-src"] == {"'self'", f"'sha256-{digest}'"}
    assert "SwaggerUIBundle" in "".join(links.script_text) and "/openapi.json" in "".join(links.script_text)
    # FastAPI's own CDN pages are off
    assert client.get("/redoc").status_code == 404
    assert client.get("/openapi.json").json()["info"]["title"]
