"""Hostile text in the real console (headless Chromium against the real server): a stored conversation whose
assistant turn is crafted (javascript: links, raw HTML with event handlers, a Markdown image on another host, text
that looks like the old renderer's placeholders) opens from the sidebar and runs no script; the text shows as text;
links keep only http(s) hrefs with rel="noopener noreferrer". The renderer itself is run on the placeholder exploit
that broke the old one. The console and the API docs (/docs, vendored Swagger UI) work under their
Content-Security-Policy: nothing is refused in the browser's log, and the docs execute a request."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import ADMIN_KEY, call
from tests.browser.test_console import all_css, css, sign_in, wait_for
from tests.fixtures.live_server import LiveServer

pytestmark = pytest.mark.browser

CRAFTED = (
    "Here are the sources [1].\n\n"
    "- [click me](javascript:window.__xss='link') and [data](data:text/html,<script>window.__xss=1</script>)\n"
    "- <img src=x onerror=\"window.__xss='img'\"> and <a href=\"javascript:window.__xss='a'\">raw link</a>\n"
    "- ![tracker](https://tracker.example/pixel.png?key=secret)\n"
    '- [titled](https://example.com/ok "title with x01x fake marker") then `<b onmouseover="x()">code</b>`\n\n'
    "<script>window.__xss='script'</script>\n\n"
    "<iframe src=\"javascript:window.__xss='iframe'\"></iframe>"
)
# The old renderer's placeholders were NUL-digit-NUL: a link whose URL held one got another link's HTML pasted into
# its href, whose quotes ended the attribute and let the URL's text become an event handler. (The server now refuses
# NUL in stored text, so this one is fed to the renderer directly.)
PLACEHOLDER_EXPLOIT = "[x](https://a/onmouseover=window.__xss=1//) [y](https://b/\u00000\u0000)"

INSPECT = """
const root = arguments[0];
for (const el of root.querySelectorAll('*')) {  // wake any handler that could have slipped in
  for (const type of ['mouseover', 'focus', 'click', 'load', 'error']) {
    if (type === 'click' && el.tagName === 'A') continue;  // a safe link would open a tab
    el.dispatchEvent(new Event(type, {bubbles: true}));
  }
}
const all = [...root.querySelectorAll('*')];
return {
  tags: [...new Set(all.map((e) => e.tagName.toLowerCase()))],
  handlers: all.flatMap((e) => [...e.attributes].filter((a) => a.name.startsWith('on')).map((a) => a.name)),
  links: [...root.querySelectorAll('a')].map((a) => [a.getAttribute('href'), a.getAttribute('rel'), a.textContent]),
  text: root.textContent,
  flag: window.__xss === undefined ? null : String(window.__xss),
};
"""


def _no_policy_refusals(driver: Any) -> None:
    refused = [e["message"] for e in driver.get_log("browser") if "Content Security Policy" in e["message"]]
    assert not refused, refused


def _trap(driver: Any) -> None:
    """A page-wide flag any injected script would set; alert() sets it too instead of opening a dialog."""
    driver.execute_script("window.__xss = undefined; window.alert = (m) => { window.__xss = 'alert:' + m; };")


def test_a_crafted_stored_answer_runs_no_script(console_server: LiveServer, browser: Any) -> None:
    body = {
        "model": "tiny",
        "messages": [
            {"role": "user", "content": "Which links do you have?"},
            {"role": "assistant", "content": CRAFTED},
            {"role": "user", "content": "Thanks."},
        ],
        "max_tokens": 4,
        "use_retrieval": False,
    }
    response = call(console_server, "POST", "/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    chat_id = response.json()["id"]
    stored = call(console_server, "GET", f"/v1/chats/{chat_id}").json()
    assert any(m["content"] == CRAFTED for m in stored["messages"])  # the crafted text is what the page will get

    sign_in(browser, console_server, ADMIN_KEY)
    browser.get_log("browser")  # start the log here
    _trap(browser)
    wait_for(browser, lambda d: css(d, f'#conversations button.conv[data-id="{chat_id}"]'), what="the chat").click()
    wait_for(browser, lambda d: css(d, f'article.turn[data-response-id="{chat_id}"]'), what="the reopened chat")
    crafted = next(t for t in all_css(browser, "article.turn.assistant") if "Here are the sources" in t.text)
    found = browser.execute_script(INSPECT, crafted.find_element("css selector", ".markdown"))

    assert found["flag"] is None, f"a script ran: {found['flag']}"
    assert not found["handlers"], found["handlers"]
    assert not {"script", "img", "iframe", "object", "embed", "svg", "style"} & set(found["tags"]), found["tags"]
    hrefs = [href for href, _, _ in found["links"]]
    assert hrefs == ["https://example.com/ok"], found["links"]  # javascript:, data: and raw <a> keep no link
    assert all(rel == "noopener noreferrer" for _, rel, _ in found["links"])
    # the raw HTML and the labels show as the text the model wrote
    for shown in (
        "<img src=x onerror=\"window.__xss='img'\">",
        "<script>window.__xss='script'</script>",
        "click me",
        "tracker",
        '<b onmouseover="x()">code</b>',
    ):
        assert shown in found["text"], shown
    assert "button" in found["tags"]  # [1] is still a citation button
    assert browser.execute_script("return document.querySelector('.cite-ref').dataset.cite") == "1"
    assert browser.execute_script("return window.__xss") is None
    _no_policy_refusals(browser)


def test_the_renderer_defeats_the_placeholder_exploit(console_server: LiveServer, browser: Any) -> None:
    browser.get(f"{console_server.base_url}/")
    _trap(browser)
    found = _render_in_page(browser, PLACEHOLDER_EXPLOIT)
    assert not found["handlers"], found["handlers"]
    assert found["flag"] is None
    assert all(href.startswith("https://") for href, _, _ in found["links"]), found["links"]
    assert all(rel == "noopener noreferrer" for _, rel, _ in found["links"])


def _render_in_page(driver: Any, source: str) -> dict[str, Any]:
    """renderMarkdown run in the page on `source`, its output put into the document, then inspected."""
    driver.execute_async_script(
        "const [source, done] = arguments;"
        "import('/static/js/markdown.js').then((m) => {"
        "  const div = document.createElement('div'); div.id = 'rendered'; document.body.append(div);"
        "  div.innerHTML = m.renderMarkdown(source); done();"
        "});",
        source,
    )
    return dict(driver.execute_script(INSPECT, css(driver, "#rendered")))


def test_console_and_api_docs_work_under_their_policy(console_server: LiveServer, browser: Any) -> None:
    sign_in(browser, console_server, ADMIN_KEY)
    for route in ("documents", "training", "adapters", "chat"):
        browser.execute_script("location.hash = arguments[0]", f"#/{route}")
        wait_for(browser, lambda d, r=route: css(d, f'#nav a[data-route="{r}"]').get_attribute("aria-current"))
    _no_policy_refusals(browser)

    browser.get(f"{console_server.base_url}/docs")
    wait_for(browser, lambda d: len(all_css(d, ".opblock")) > 10, 60, "the operations listed")
    health = css(browser, '.opblock-summary-path[data-path="/health"]')
    health.click()
    block = wait_for(browser, lambda d: css(d, ".opblock.is-open"))
    block.find_element("css selector", ".try-out__btn").click()
    block.find_element("css selector", ".execute").click()
    live = ".live-responses-table tbody .response-col_status"
    status = wait_for(browser, lambda d: block.find_element("css selector", live).text, 60, "the request answered")
    assert status.strip().startswith("200"), status
    hosts = browser.execute_script("return performance.getEntriesByType('resource').map((e) => new URL(e.name).host)")
    assert set(hosts) == {console_server.base_url.split("//", 1)[1]}, hosts  # nothing fetched from another host
    _no_policy_refusals(browser)
