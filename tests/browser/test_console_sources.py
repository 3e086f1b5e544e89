"""The Sources page in the real console (headless Chromium against the real server, its own sync machinery): an
admin adds a folder of three files (one named like an HTML tag: it shows as text and runs nothing), sees the dry-run
diff of its first sync (every file, nothing ingested yet), syncs it (in the background: the page follows it), and the
row shows the counts the API records while the collection then holds exactly the folder's files; a dry run with
nothing changed since lists no file. A folder that does not exist is refused with the server's own message, and a
source whose folder disappeared shows the sync's error as its last error. A member key sees neither the page nor the
API."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import ADMIN_KEY, MEMBER_KEY, call
from tests.browser.test_console import all_css, css, go, shot, sign_in, wait_for
from tests.fixtures.live_server import LiveServer

pytestmark = pytest.mark.browser

FILES = {
    "holidays.txt": "Holiday policy. Staff get twenty-five days of paid leave a year, booked through the HR portal.",
    "notes/lockers.md": "# Lockers\n\nLockers on the ground floor are emptied every Friday evening.",
    # a file name is data too: it must show as typed and run nothing
    '<img src=x onerror="window.__xss=1">.txt': "Visitors sign in at reception and wear a badge at all times.",
}


def add_source(driver: Any, path: Path | str, collection: str, name: str) -> None:
    for field, value in (("#source-path", str(path)), ("#source-collection", collection), ("#source-name", name)):
        box = css(driver, field)
        box.clear()
        box.send_keys(value)
    css(driver, "#source-form button[type=submit]").click()


def status_text(driver: Any) -> str:
    return str(css(driver, "#sources-status").text)


def row(driver: Any, source_id: str) -> Any:
    return css(driver, f'#sources-body tr[data-id="{source_id}"]')


def counts_in(element: Any) -> dict[str, int]:
    shown = element.find_elements("css selector", "dd[data-count]")
    return {dd.get_attribute("data-count"): int(dd.text) for dd in shown}


def source_named(server: LiveServer, name: str) -> dict[str, Any]:
    response = call(server, "GET", f"/v1/sources/{name}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_a_folder_added_previewed_and_synced_through_the_console(
    console_server: LiveServer, browser: Any, screenshot_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "shared"
    for rel, text in FILES.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    collection, name = f"synced-{uuid.uuid4().hex[:6]}", f"shared-{uuid.uuid4().hex[:6]}"
    sign_in(browser, console_server, ADMIN_KEY)
    go(browser, "sources")

    add_source(browser, folder, collection, name)
    diff = wait_for(browser, lambda d: css(d, "#source-diff") if css(d, "#source-diff").is_displayed() else None)
    source = source_named(console_server, name)
    assert diff.get_attribute("data-dry-run") == "true" and diff.get_attribute("data-source") == source["id"]
    assert {li.text for li in diff.find_elements("css selector", "ul.diff-added li")} == set(FILES)
    assert counts_in(diff)["added"] == len(FILES)
    assert browser.execute_script("return window.__xss") is None and not all_css(browser, "#source-diff img")
    assert (
        source["status"] == "new"
        and call(console_server, "GET", f"/v1/documents?collection={collection}").json()["data"] == []
    )  # the preview ingested nothing
    wait_for(browser, lambda d: row(d, source["id"]).get_attribute("data-status") == "new", what="the new source")

    row(browser, source["id"]).find_element("css selector", f'button[aria-label="Sync {name}"]').click()
    wait_for(browser, lambda d: f"{name} synced." in status_text(d), 120, "the sync's end")
    wait_for(browser, lambda d: row(d, source["id"]).get_attribute("data-status") == "ok", what="the row refreshed")
    synced = source_named(console_server, name)
    assert synced["counts"]["added"] == len(FILES) and synced["counts"]["failed"] == 0
    assert counts_in(row(browser, source["id"])) == synced["counts"]
    assert diff.get_attribute("data-dry-run") == "false" and counts_in(diff) == synced["counts"]
    stored = call(console_server, "GET", f"/v1/documents?collection={collection}").json()["data"]
    assert sorted(d["source"] for d in stored) == sorted(f"{name}/{rel}" for rel in FILES)
    shot(browser, screenshot_dir, "10-sources")

    # nothing changed since: the dry run lists no file to add, change or delete
    row(browser, source["id"]).find_element("css selector", f'button[aria-label="Preview {name}"]').click()
    wait_for(browser, lambda d: css(d, "#source-diff").get_attribute("data-dry-run") == "true", what="the dry run")
    assert counts_in(css(browser, "#source-diff")) == {**{k: 0 for k in synced["counts"]}, "unchanged": len(FILES)}
    assert not all_css(browser, "#source-diff ul.diff-files")


def test_errors_are_shown_in_the_servers_words(console_server: LiveServer, browser: Any, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    refused = call(console_server, "POST", "/v1/sources", json={"path": str(missing), "collection": "x"})
    assert refused.status_code == 422
    sign_in(browser, console_server, ADMIN_KEY)
    go(browser, "sources")
    add_source(browser, missing, "x", f"missing-{uuid.uuid4().hex[:6]}")
    alert = wait_for(browser, lambda d: css(d, "#sources-status[role=alert]"), what="the refusal")
    assert refused.json()["error"]["message"] in alert.text and "not a directory" in alert.text

    folder = tmp_path / "gone"
    folder.mkdir()
    (folder / "a.txt").write_text("A file in a folder that will be unmounted.")
    name = f"gone-{uuid.uuid4().hex[:6]}"
    add_source(browser, folder, "gone", name)
    source = wait_for(browser, lambda d: css(d, f'#sources-body tr[data-name="{name}"]'), what="the added source")
    shutil.rmtree(folder)
    source.find_element("css selector", f'button[aria-label="Sync {name}"]').click()
    selector = f'#sources-body tr[data-name="{name}"]'
    wait_for(browser, lambda d: css(d, selector).get_attribute("data-status") == "failed", what="the failed sync")
    recorded = source_named(console_server, name)["last_error"]
    assert recorded and "not a readable directory" in recorded
    assert recorded in css(browser, f"{selector} td.last-error").text
    wait_for(browser, lambda d: recorded in status_text(d), what="the sync's error in the status line")


def test_a_member_gets_neither_the_page_nor_the_api(console_server: LiveServer, browser: Any) -> None:
    assert call(console_server, "GET", "/v1/sources", key=MEMBER_KEY).status_code == 403
    sign_in(browser, console_server, MEMBER_KEY)
    assert not css(browser, '#nav a[data-route="sources"]').is_displayed()
    browser.execute_script("location.hash = '#/sources'")
    assert "for admin keys" in wait_for(browser, lambda d: css(d, "#page [role=alert]")).text
    assert not all_css(browser, "#source-form")
