"""The web console in a real browser (headless Debian Chromium) against the real server: sign-in, documents
(upload, list, search), chat (streamed answer, citation opening its passage, thumbs-down with a correction counted as
a preference pair), a training job run to the end with its curves, activation of the new adapter and a chat with it,
and a member key that sees neither the admin pages nor another collection. Each page is saved as a PNG."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import ADMIN_KEY, MEMBER_COLLECTION, MEMBER_KEY, OTHER_COLLECTION, call, import_pairs
from tests.fixtures.live_server import LiveServer
from tests.serving.test_rag_api import DOCS

pytestmark = pytest.mark.browser

UPLOADS = {
    "vpn.txt": "VPN guide. To connect from home, open the VPN client, choose the Office profile and sign in with "
    "your badge number. The connection drops after eight hours of inactivity.",
    "parking.md": "# Parking\n\nStaff park on level two of the garage. Visitors get a day pass from reception.",
}
QUESTION = "How do I reset the router to factory settings?"
CORRECTION = "Hold the reset button for ten seconds until the light blinks orange."
IMPORTED = [
    {"prompt": f"Question {i}: what is the policy on topic {i}?", "chosen": f"The handbook's rule {i} applies.",
     "rejected": f"zz qq {i} ??"}
    for i in range(6)
]  # fmt: skip
JOB_OPTIONS = {"max_steps": "3", "logging_steps": "1", "learning_rate": "0.01", "lora_r": "8", "eval_split": "0.25"}


@pytest.fixture(scope="module")
def library(console_server: LiveServer) -> dict[str, str]:
    """router.txt in the member's collection, invoices.txt in another one (uploaded over REST)."""
    ids = {}
    for name, collection in (("router.txt", MEMBER_COLLECTION), ("invoices.txt", OTHER_COLLECTION)):
        files = [("files", (name, DOCS[name].encode()))]
        response = call(console_server, "POST", "/v1/documents", files=files, data={"collection": collection})
        assert response.status_code == 200, response.text
        ids[name] = response.json()["data"][0]["document_id"]
    return ids


def wait_for(driver: Any, condition: Callable[[Any], Any], timeout: float = 30, what: str = "") -> Any:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # pages re-render as they poll: an element found a moment ago may be replaced; look again
    ignored = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(driver, timeout, poll_frequency=0.2, ignored_exceptions=ignored).until(condition, message=what)


def css(driver: Any, selector: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector)


def all_css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def shot(driver: Any, folder: Path, name: str) -> None:
    """The whole page as a PNG (the window grows to the page's height for the picture, then is restored)."""
    size = driver.get_window_size()
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(size["width"], min(max(height + 140, size["height"]), 4000))
    time.sleep(0.4)  # let the resize and the last paint settle
    driver.save_screenshot(str(folder / f"{name}.png"))
    driver.set_window_size(size["width"], size["height"])


def sign_in(driver: Any, server: LiveServer, key: str) -> None:
    driver.get(f"{server.base_url}/#/chat")
    driver.execute_script("sessionStorage.clear()")  # forget an earlier key: the page asks for one again
    driver.refresh()
    field = wait_for(driver, lambda d: css(d, "#api-key") if css(d, "#api-key").is_displayed() else None)
    field.send_keys(key)
    css(driver, "#sign-in-form button[type=submit]").click()
    wait_for(driver, lambda d: css(d, "#nav").is_displayed(), what="signed in")


def go(driver: Any, route: str) -> None:
    driver.execute_script("location.hash = arguments[0]", f"#/{route}")
    wait_for(driver, lambda d: css(d, f'#nav a[data-route="{route}"]').get_attribute("aria-current") == "page")


def ask(driver: Any, question: str, timeout: float = 90) -> Any:
    """Sends a question and returns the finished answer's element."""
    before = len(all_css(driver, "article.turn.assistant"))
    from selenium.webdriver.common.keys import Keys

    css(driver, "#prompt").send_keys(question, Keys.ENTER)  # Enter sends (Shift+Enter would add a line)
    wait_for(driver, lambda d: len(all_css(d, "article.turn.assistant")) > before)
    turn = all_css(driver, "article.turn.assistant")[-1]
    wait_for(driver, lambda d: turn.get_attribute("data-response-id"), timeout, what=f"answer to {question!r}")
    return turn


def choose(driver: Any, select_id: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    wait_for(driver, lambda d: all_css(d, f'#{select_id} option[value="{value}"]'), what=f"{value} in #{select_id}")
    Select(css(driver, f"#{select_id}")).select_by_value(value)


def test_sign_in_upload_list_and_search(
    console_server: LiveServer, browser: Any, library: dict[str, str], screenshot_dir: Path, tmp_path: Path
) -> None:
    browser.get(f"{console_server.base_url}/")
    wait_for(browser, lambda d: css(d, "#sign-in").is_displayed(), what="the sign-in form")
    css(browser, "#api-key").send_keys("not-a-valid-key-at-all")
    css(browser, "#sign-in-form button[type=submit]").click()
    wait_for(browser, lambda d: "invalid API key" in css(d, "#sign-in-status").text, what="the API's refusal in words")
    shot(browser, screenshot_dir, "01-sign-in")

    sign_in(browser, console_server, ADMIN_KEY)
    assert "ada (admin)" in css(browser, "#who-name").text
    go(browser, "documents")
    paths = []
    for name, text in UPLOADS.items():
        (tmp_path / name).write_text(text)
        paths.append(str(tmp_path / name))
    field = css(browser, "#upload-collection")
    field.clear()
    field.send_keys(MEMBER_COLLECTION)
    css(browser, "#files").send_keys("\n".join(paths))
    wait_for(browser, lambda d: len(all_css(d, "#upload-queue li[data-state]")) == 2, 60, "both uploads finished")
    for item in all_css(browser, "#upload-queue li"):
        assert item.get_attribute("data-state") == "ok", item.text
        assert "ingested" in item.text and item.find_element("css selector", "progress").get_attribute("value") == "100"

    rows = wait_for(browser, lambda d: len(all_css(d, "#documents-body tr")) >= 4 and all_css(d, "#documents-body tr"))
    listed = {row.get_attribute("data-source"): row for row in rows}
    api_docs = {d["source"]: d for d in call(console_server, "GET", "/v1/documents").json()["data"]}
    assert set(listed) == set(api_docs) == {*UPLOADS, "router.txt", "invoices.txt"}
    for name in UPLOADS:
        cells = listed[name].text
        assert MEMBER_COLLECTION in cells and "ready" in cells
        chunk_cell = listed[name].find_element("css selector", "td[data-chunks]")
        assert chunk_cell.text == str(api_docs[name]["chunks"]) and api_docs[name]["chunks"] >= 1

    css(browser, "#search").send_keys("VPN badge number")
    hits = wait_for(browser, lambda d: all_css(d, "#search-results .hit"), what="search results")
    assert "vpn.txt" in hits[0].text or "VPN guide" in hits[0].text
    expected = call(console_server, "POST", "/v1/retrieve", json={"query": "VPN badge number", "k": 8}).json()["data"]
    shown = [float(h.find_element("css selector", ".score").text) for h in hits]
    assert shown == [round(hit["score"], 3) for hit in expected]
    shot(browser, screenshot_dir, "02-documents")

    listed["parking.md"].find_element("css selector", "button.danger").click()
    css(browser, "dialog[open] [data-testid=confirm-ok]").click()
    wait_for(browser, lambda d: not all_css(d, '#documents-body tr[data-source="parking.md"]'), what="deleted")
    assert "parking.md" not in {d["source"] for d in call(console_server, "GET", "/v1/documents").json()["data"]}


def test_streamed_answer_citation_and_thumbs_down_counted(
    console_server: LiveServer, browser: Any, library: dict[str, str], screenshot_dir: Path
) -> None:
    sign_in(browser, console_server, ADMIN_KEY)
    choose(browser, "collection", MEMBER_COLLECTION)
    turn = ask(browser, QUESTION)
    assert int(turn.get_attribute("data-chunks")) > 1, "the answer arrived in one piece, not streamed"
    response_id = turn.get_attribute("data-response-id")
    stored = call(console_server, "GET", f"/v1/chats/{response_id}").json()
    assert turn.find_element("css selector", ".markdown").text.strip() == stored["answer"].strip()

    summary = turn.find_element("css selector", 'details[data-cite="1"] summary')
    assert summary.text.startswith("[1] router")  # the document title
    summary.click()
    passage = turn.find_element("css selector", 'details[data-cite="1"] .passage')
    wait_for(browser, lambda d: passage.is_displayed() and passage.text)
    chunks = call(console_server, "GET", f"/v1/documents/{library['router.txt']}").json()["chunk_list"]
    cited = stored["citations"][0]
    cited_text = next(c["text"] for c in chunks if c["id"] == cited["chunk_id"]).strip()
    assert passage.text == cited_text
    assert "Document: router.txt" in turn.find_element("css selector", 'details[data-cite="1"] .cite-meta').text

    counts_before = call(console_server, "GET", "/v1/preferences?limit=1").json()["counts"]
    turn.find_element("css selector", 'button[aria-label="Bad answer"]').click()
    box = turn.find_element("css selector", ".correction textarea")
    box.send_keys(CORRECTION)
    turn.find_element("css selector", ".correction button[type=submit]").click()
    wait_for(browser, lambda d: "preference pair" in turn.find_element("css selector", ".feedback .status").text)
    wait_for(browser, lambda d: all_css(d, "#conversations button.conv"), what="the conversation in the sidebar")
    shot(browser, screenshot_dir, "03-chat")

    # the stored conversation reopens from the sidebar; its citation fetches the passage from the document
    css(browser, "button.new-chat").click()
    assert not all_css(browser, "article.turn")
    css(browser, f'#conversations button.conv[data-id="{response_id}"]').click()
    reopened = wait_for(browser, lambda d: css(d, f'article.turn[data-response-id="{response_id}"]'))
    assert css(browser, "article.turn.user").text == QUESTION
    reopened.find_element("css selector", 'details[data-cite="1"] summary').click()
    passage = reopened.find_element("css selector", 'details[data-cite="1"] .passage')
    wait_for(browser, lambda d: passage.text == cited_text, what="the stored citation's passage")

    go(browser, "training")
    counts = call(console_server, "GET", "/v1/preferences?limit=1").json()["counts"]
    assert counts.get("feedback", 0) == counts_before.get("feedback", 0) + 1
    shown = wait_for(browser, lambda d: css(d, 'dd[data-count="feedback"]'))
    wait_for(browser, lambda d: shown.text == str(counts["feedback"]), what="the feedback pair counted")
    pairs = call(console_server, "GET", "/v1/preferences", params={"provenance": "feedback"}).json()["data"]
    assert any(p["chosen"] == CORRECTION for p in pairs)


def test_training_job_runs_and_its_adapter_answers_in_chat(
    console_server: LiveServer, browser: Any, library: dict[str, str], screenshot_dir: Path
) -> None:
    import_pairs(console_server, IMPORTED)
    sign_in(browser, console_server, ADMIN_KEY)
    browser.execute_script("window.__sameDocument = true")  # survives hash navigation, not a reload
    go(browser, "training")
    wait_for(browser, lambda d: css(d, 'dd[data-count="imported"]').text == str(len(IMPORTED)), what="imported count")
    choose(browser, "job-method", "dpo")
    wait_for(browser, lambda d: css(d, "#opt-max_steps").get_attribute("placeholder"), what="defaults shown")
    assert css(browser, "#opt-learning_rate").get_attribute("placeholder") == "0.0002"  # training.config's default
    name = css(browser, "#job-name")
    name.clear()
    name.send_keys("web")
    for key, value in JOB_OPTIONS.items():
        css(browser, f"#opt-{key}").send_keys(value)
    css(browser, "#job-extra").send_keys('{"min_tokens": 1, "near_duplicate_threshold": 1.0}')
    css(browser, "#start-job").click()
    wait_for(browser, lambda d: css(d, "#job-detail #job-state"), what="the job's detail")
    final = {"succeeded", "failed", "cancelled"}
    wait_for(browser, lambda d: css(d, "#job-detail #job-state").text in final, 300, "the job's end")
    job_id = css(browser, "#job-detail").get_attribute("data-id")
    job = call(console_server, "GET", f"/v1/training/jobs/{job_id}").json()
    assert job["state"] == "succeeded", f"{job['error']}\n" + "\n".join(job["log_tail"])
    state = css(browser, "#job-state")
    assert state.text == "succeeded" and css(browser, "#job-progress").text == "100%"
    series = {c.get_attribute("data-series") for c in all_css(browser, "#charts svg.chart")}
    assert "loss" in series, series
    logged = [e["loss"] for e in job["metrics"]["history"] if "loss" in e]
    dots = all_css(browser, '#charts svg[data-series="loss"] circle')
    assert len(dots) == len(logged) >= 2
    assert css(browser, "#job-log").text.strip()
    shot(browser, screenshot_dir, "04-training")

    adapter = job["metrics"]["adapter"]
    assert adapter == "web@v1"
    go(browser, "adapters")
    wait_for(browser, lambda d: css(d, f'button[aria-label="Activate {adapter}"]')).click()
    if all_css(browser, "dialog[open]"):  # the gate found it worse: the console asks before forcing it
        css(browser, "dialog[open] [data-testid=confirm-ok]").click()
    wait_for(browser, lambda d: f"now serves {adapter}" in css(d, "#adapters-status").text, 60)
    assert call(console_server, "GET", "/v1/adapters").json()["active"]["web"] == adapter
    wait_for(browser, lambda d: css(d, f'tr[data-id="{adapter}"]').get_attribute("data-status") == "active")
    shot(browser, screenshot_dir, "05-adapters")

    go(browser, "chat")
    option = wait_for(browser, lambda d: css(d, '#model option[value="web"]'), what="the adapter in the picker")
    assert adapter in option.text
    choose(browser, "model", "web")
    choose(browser, "collection", MEMBER_COLLECTION)
    turn = ask(browser, QUESTION)
    assert "web" in turn.find_element("css selector", ".turn-meta").text
    stored = call(console_server, "GET", f"/v1/chats/{turn.get_attribute('data-response-id')}").json()
    assert stored["model"] == "web"
    assert browser.execute_script("return window.__sameDocument === true"), "the page reloaded"
    shot(browser, screenshot_dir, "06-chat-with-adapter")


def test_member_sees_no_training_and_no_other_collection(
    console_server: LiveServer, browser: Any, library: dict[str, str], screenshot_dir: Path
) -> None:
    sign_in(browser, console_server, MEMBER_KEY)
    assert f"max (member · {MEMBER_COLLECTION})" in css(browser, "#who-name").text
    visible = [a.text for a in all_css(browser, "#nav a") if a.is_displayed()]
    assert visible == ["Chat", "Documents"]
    options = wait_for(browser, lambda d: all_css(d, '#collection option[value]:not([value=""])'))
    assert [o.get_attribute("value") for o in options] == [MEMBER_COLLECTION]

    go(browser, "documents")
    rows = wait_for(browser, lambda d: all_css(d, "#documents-body tr"), what="the member's documents")
    sources = {row.get_attribute("data-source") for row in rows}
    assert "router.txt" in sources and "invoices.txt" not in sources
    assert {row.find_elements("css selector", "td")[1].text for row in rows} == {MEMBER_COLLECTION}
    css(browser, "#search").send_keys("invoices late payment fee")
    wait_for(browser, lambda d: css(d, "#search-status").text not in ("", "Searching…"), what="the search's answer")
    assert all(OTHER_COLLECTION not in hit.text for hit in all_css(browser, "#search-results .hit"))
    shot(browser, screenshot_dir, "07-member-documents")

    go(browser, "training")
    assert "for admin keys" in wait_for(browser, lambda d: css(d, "#page [role=alert]")).text
    assert not all_css(browser, "#job-method")

    browser.set_window_size(390, 844)  # a phone's width
    try:
        go(browser, "chat")
        wait_for(browser, lambda d: all_css(d, '#collection option[value]:not([value=""])'))
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= 390, f"the chat page scrolls sideways at phone width ({width}px)"
        shot(browser, screenshot_dir, "08-chat-phone")
    finally:
        browser.set_window_size(1280, 900)


def test_markdown_renderer_never_emits_markup_from_the_answer(console_server: LiveServer, browser: Any) -> None:
    """The renderer the chat uses, run in the browser on hostile text: tags stay text, bad links lose their href."""
    browser.get(f"{console_server.base_url}/")
    source = (
        "<img src=x onerror=alert(1)> **bold** *it* `<b>code</b>`\n\n- one\n- [two](javascript:alert(1))\n\n"
        "1. [ok](https://example.com/a_b_c) [1]\n\n```\n<script>x()</script>\n```"
    )
    html = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "import('/static/js/markdown.js').then((m) => done(m.renderMarkdown(arguments[0])));",
        source,
    )
    holder = browser.execute_script(
        "const div = document.createElement('div'); div.innerHTML = arguments[0];"
        "return {tags: [...div.querySelectorAll('*')].map((e) => e.tagName.toLowerCase()),"
        " hrefs: [...div.querySelectorAll('a')].map((a) => a.getAttribute('href')),"
        " handlers: [...div.querySelectorAll('*')].some((e) => [...e.attributes].some((a) => a.name.startsWith('on'))),"
        " text: div.textContent};",
        html,
    )
    assert set(holder["tags"]) <= {"p", "strong", "em", "code", "ul", "ol", "li", "a", "button", "pre", "br"}
    assert holder["hrefs"] == ["https://example.com/a_b_c"]  # javascript: links keep their label only
    assert not holder["handlers"]
    assert "<img src=x onerror=alert(1)>" in holder["text"] and "<script>x()</script>" in holder["text"]
    assert "strong" in holder["tags"] and "em" in holder["tags"] and "button" in holder["tags"]  # [1] is a citation
