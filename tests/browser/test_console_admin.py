"""The console's admin pages in a real browser (headless Chromium) against the real server: an admin creates a
member key scoped to one collection on the Keys page, the secret is shown once and then works against the API, is
gone from the page once dismissed; rotating shows a new secret and refuses the old one; revoking (confirmed) refuses
the new one. The Audit page lists the creation, rotation and revocation with the admin as actor, an action filter
narrows the list to what the API answers for the same filter, and the CSV export (fetched with the key, saved via a
Blob URL) holds the same rows as the API's own export. Neither page is refused anything by the CSP."""

from __future__ import annotations

import csv
import io
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import ADMIN_KEY, MEMBER_COLLECTION, call
from tests.browser.test_console import all_css, css, go, shot, sign_in, wait_for
from tests.fixtures.live_server import LiveServer

pytestmark = pytest.mark.browser

BLOB_TEXT = """
const done = arguments[arguments.length - 1];
import('/static/js/audit.js').then((m) => m.lastExport.blob.text()).then(done, (e) => done('ERROR ' + e));
"""


def me(server: LiveServer, secret: str) -> httpx.Response:
    return httpx.get(f"{server.base_url}/v1/me", headers={"Authorization": f"Bearer {secret}"}, timeout=30)


def shown_secret(driver: Any) -> str:
    box = wait_for(driver, lambda d: css(d, "#key-secret") if css(d, "#key-secret").is_displayed() else None)
    assert "shown this once" in box.text
    secret = str(css(driver, "#key-secret-value").get_attribute("value"))
    assert secret
    return secret


def dismiss(driver: Any, secret: str) -> None:
    css(driver, "#key-secret-dismiss").click()
    wait_for(driver, lambda d: not css(d, "#key-secret").is_displayed(), what="the secret dismissed")
    # nowhere in the page any more: not in the DOM, not in a field's value, not in the tab's storage
    found = driver.execute_script(
        "const s = arguments[0];"
        "return document.documentElement.outerHTML.includes(s)"
        " || [...document.querySelectorAll('input')].some((i) => i.value.includes(s))"
        " || JSON.stringify({...sessionStorage}).includes(s) || JSON.stringify({...localStorage}).includes(s);",
        secret,
    )
    assert found is False


def confirm(driver: Any, row_selector: str, label: str) -> None:
    css(driver, f'{row_selector} button[aria-label^="{label}"]').click()
    css(driver, "dialog[open] [data-testid=confirm-ok]").click()


def no_policy_refusals(driver: Any) -> None:
    refused = [e["message"] for e in driver.get_log("browser") if "Content Security Policy" in e["message"]]
    assert not refused, refused


def test_keys_created_rotated_revoked_and_audited_through_the_console(
    console_server: LiveServer, browser: Any, screenshot_dir: Path
) -> None:
    name = f"browser-member-{uuid.uuid4().hex[:8]}"
    sign_in(browser, console_server, ADMIN_KEY)
    browser.get_log("browser")  # start the log here
    go(browser, "keys")
    css(browser, "#key-name").send_keys(name)
    css(browser, "#key-collections").send_keys(MEMBER_COLLECTION)
    css(browser, "#key-rpm").send_keys("30")
    css(browser, "#key-form button[type=submit]").click()
    secret = shown_secret(browser)
    shot(browser, screenshot_dir, "06-keys-secret")

    who = me(console_server, secret)
    assert who.status_code == 200, who.text
    assert (who.json()["name"], who.json()["role"], who.json()["collections"]) == (name, "member", [MEMBER_COLLECTION])
    dismiss(browser, secret)

    row = f'#keys-body tr[data-name="{name}"]'
    wait_for(browser, lambda d: css(d, row).get_attribute("data-status") == "active", what="the new key listed")
    listed = {k["name"]: k for k in call(console_server, "GET", "/v1/keys").json()["data"]}
    key = listed[name]
    assert css(browser, row).get_attribute("data-id") == key["id"]
    cells = css(browser, row).text
    assert "ada" in cells and MEMBER_COLLECTION in cells and "30 requests/min" in cells and key["prefix"] in cells

    confirm(browser, row, "Rotate")
    rotated = shown_secret(browser)
    assert rotated != secret
    assert me(console_server, secret).status_code == 401
    assert me(console_server, rotated).json()["name"] == name
    dismiss(browser, rotated)

    confirm(browser, row, "Revoke")
    wait_for(browser, lambda d: css(d, row).get_attribute("data-status") == "revoked", what="the key revoked")
    assert not all_css(browser, f"{row} button")  # a revoked key offers no action
    assert me(console_server, rotated).status_code == 401
    shot(browser, screenshot_dir, "06-keys")

    go(browser, "audit")
    wanted = {"keys.create", "keys.rotate", "keys.revoke"}

    def ours(d: Any) -> dict[str, Any]:
        rows = all_css(d, "#audit-body tr[data-action^='keys.']")
        return {r.get_attribute("data-action"): r for r in rows if key["id"] in r.text}

    found = wait_for(browser, lambda d: wanted <= set(ours(d)) and ours(d), what="the key's audit rows")
    for audit_row in found.values():
        assert audit_row.get_attribute("data-actor") == "ada" and audit_row.get_attribute("data-outcome") == "ok"
    order = [r.get_attribute("data-action") for r in all_css(browser, "#audit-body tr") if key["id"] in r.text]
    assert order[:3] == ["keys.revoke", "keys.rotate", "keys.create"]  # newest first

    css(browser, "#audit-action").send_keys("keys.revoke")
    css(browser, "#audit-apply").click()
    expected = [str(e["id"]) for e in call(console_server, "GET", "/v1/audit?action=keys.revoke").json()["data"]]
    shown = lambda d: [r.get_attribute("data-id") for r in all_css(d, "#audit-body tr")]  # noqa: E731
    wait_for(browser, lambda d: shown(d) == expected, what="the list narrowed to the revocations")
    assert len(expected) < len(call(console_server, "GET", "/v1/audit?action=keys").json()["data"])
    shot(browser, screenshot_dir, "07-audit")

    action = css(browser, "#audit-action")
    action.clear()
    action.send_keys("keys")
    css(browser, "#audit-export-csv").click()
    wait_for(browser, lambda d: css(d, "#audit-export-link").get_attribute("download") == "audit.csv", what="export")
    text = browser.execute_async_script(BLOB_TEXT)
    assert not text.startswith("ERROR"), text
    exported = list(csv.DictReader(io.StringIO(text)))
    api_export = call(console_server, "GET", "/v1/audit?action=keys&format=csv&limit=100000")
    assert exported == list(csv.DictReader(io.StringIO(api_export.text)))
    mine = {r["action"]: r for r in exported if r["target"] == key["id"]}
    assert set(mine) == wanted and {r["actor"] for r in mine.values()} == {"ada"}
    assert secret not in text and rotated not in text

    css(browser, "#audit-export-jsonl").click()
    wait_for(browser, lambda d: css(d, "#audit-export-link").get_attribute("download") == "audit.jsonl", what="jsonl")
    lines = browser.execute_async_script(BLOB_TEXT).splitlines()
    api_lines = call(console_server, "GET", "/v1/audit?action=keys&format=jsonl&limit=100000").text.splitlines()
    assert [json.loads(line) for line in lines] == [json.loads(line) for line in api_lines]
    assert {json.loads(line)["action"] for line in lines if key["id"] in line} == wanted
    no_policy_refusals(browser)


def test_the_admin_pages_are_refused_to_a_member(console_server: LiveServer, browser: Any) -> None:
    from tests.browser.conftest import MEMBER_KEY

    sign_in(browser, console_server, MEMBER_KEY)
    assert not css(browser, '#nav a[data-route="keys"]').is_displayed()
    browser.execute_script("location.hash = '#/audit'")
    wait_for(browser, lambda d: "for admin keys" in css(d, "#page").text, what="the refusal")
    assert not all_css(browser, "#audit-body")
    assert call(console_server, "GET", "/v1/audit", key=MEMBER_KEY).status_code == 403
