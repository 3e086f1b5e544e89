"""Console sign-in through a real OpenID provider, in headless Chromium.

The provider is node's `oidc-provider` (tests/fixtures/oidc, installed by `npm ci` there; .ci/run does it) with its
development login pages: `hr-user` is in group `hr`, `nogroup-user` in none. The server maps `hr` to a member scoped
to the `hr` collection. The browser clicks "Sign in with your company account", logs in at the provider, consents,
and comes back signed in by an HttpOnly session cookie: the page's own requests then act as that member (its
`/v1/me`, an `hr` listing allowed, an `eng` one refused), a cookie request that is not JSON is refused by the
cross-site guard, sign-out ends the session, and the user in no mapped group gets the refusal page and no session.
The server runs the transformers engine on the tiny model: sign-in needs no generation, and it starts in seconds.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import ADMIN_KEY
from tests.fixtures.live_server import LiveServer, free_port
from tests.serving.conftest import tiny_settings

pytestmark = pytest.mark.browser
PROVIDER_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "oidc"
CLIENT_SECRET = "console-secret-0123456789"
WAIT_S = 60


@pytest.fixture(scope="module")
def provider_port() -> Iterator[int]:
    node = shutil.which("node")
    if node is None or not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        pytest.skip("the OpenID provider needs node and `npm ci` in tests/fixtures/oidc (.ci/run does it)")
    port = free_port()
    yield port


@pytest.fixture(scope="module")
def oidc_server(
    provider_port: int, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, str]]:
    from serving.app import create_app

    issuer = f"http://localhost:{provider_port}"
    oidc = {
        "issuer": issuer,
        "client_id": "assistant-console",
        "client_secret": CLIENT_SECRET,
        "redirect_url": "set below, once the server's port is known",
        "scopes": ["openid", "email", "groups"],
        "groups": {"hr": {"role": "member", "collections": ["hr"]}},
    }
    settings = tiny_settings(
        tmp_path_factory.mktemp("oidc-data"),
        tiny_model_dir,
        server={"api_keys": [{"key": ADMIN_KEY, "name": "ada", "role": "admin"}], "default_max_tokens": 8},
        oidc=oidc,
    )
    settings.engine.backend = "transformers"  # sign-in needs no generation: the quickest real engine to start
    server = LiveServer(create_app(settings))
    assert settings.oidc is not None
    settings.oidc.redirect_url = f"{server.base_url}/auth/callback"
    command = ["node", "provider.mjs", str(provider_port), settings.oidc.redirect_url, CLIENT_SECRET]
    provider = subprocess.Popen(command, cwd=PROVIDER_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(f"{issuer}/.well-known/openid-configuration", provider)
        server.start()
        yield server, issuer
        server.stop()
    finally:
        provider.terminate()
        provider.wait(timeout=10)


def _wait_for(url: str, provider: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if provider.poll() is not None:
            raise RuntimeError(f"the OpenID provider exited: {provider.stdout.read() if provider.stdout else ''}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"the OpenID provider did not answer {url}")


def _until(browser: Any, condition: Any) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT_S).until(condition)


def _log_in_at_provider(browser: Any, login: str) -> None:
    from selenium.webdriver.common.by import By

    field = _until(browser, lambda b: b.find_elements(By.NAME, "login"))[0]
    field.send_keys(login)
    browser.find_element(By.NAME, "password").send_keys("any password (development login)")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    consent = _until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "input[name=prompt][value=consent]"))
    consent[0].find_element(By.XPATH, "./ancestor::form").find_element(By.CSS_SELECTOR, "button").click()


def _fetch(browser: Any, path: str, init: dict[str, Any] | None = None) -> dict[str, Any]:
    """The page's own request (its cookies, its origin): status and JSON body."""
    script = (
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], arguments[1]).then(async (r) => done({status: r.status, body: await r.json()}))"
        ".catch((e) => done({status: -1, body: String(e)}));"
    )
    return dict(browser.execute_async_script(script, path, init or {}))


def test_hr_user_signs_in_as_hr_member_and_signs_out(oidc_server: tuple[LiveServer, str], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    server, _ = oidc_server
    browser.get(f"{server.base_url}/")
    button = _until(
        browser, lambda b: b.find_element(By.ID, "oidc-login").is_displayed() and b.find_element(By.ID, "oidc-login")
    )
    assert button.text == "Sign in with your company account"
    button.click()
    _log_in_at_provider(browser, "hr-user")
    _until(
        browser,
        lambda b: (
            b.current_url.startswith(server.base_url) and "hanna@example.com" in b.find_element(By.ID, "who-name").text
        ),
    )
    assert "member" in browser.find_element(By.ID, "who-name").text

    me = _fetch(browser, "/v1/me")
    assert me["status"] == 200
    assert (me["body"]["name"], me["body"]["role"], me["body"]["collections"]) == (
        "hanna@example.com",
        "member",
        ["hr"],
    )
    assert _fetch(browser, "/v1/documents?collection=hr")["status"] == 200
    refused = _fetch(browser, "/v1/documents?collection=eng")
    assert refused["status"] == 403 and refused["body"]["error"]["type"] == "permission_error"
    search = {"method": "POST", "headers": {"Content-Type": "application/json"}}
    eng = _fetch(browser, "/v1/retrieve", {**search, "body": '{"query": "salary", "collections": ["eng"]}'})
    assert eng["status"] == 403
    # the cookie is HttpOnly (no script reads it) and rides only on requests that prove they come from this page
    assert "assistant_session" not in browser.execute_script("return document.cookie")
    cookie = next(c for c in browser.get_cookies() if c["name"] == "assistant_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and not cookie["secure"]  # plain http here
    plain = _fetch(browser, "/auth/logout", {"method": "POST", "headers": {"Content-Type": "text/plain"}})
    assert plain["status"] == 403 and _fetch(browser, "/v1/me")["status"] == 200

    browser.find_element(By.ID, "sign-out").click()
    _until(browser, lambda b: b.find_element(By.ID, "sign-in").is_displayed())
    assert _fetch(browser, "/v1/me")["status"] == 401
    assert all(c["name"] != "assistant_session" for c in browser.get_cookies())
    # the audit log names the signed-in user as the actor of what the session did (and of what was refused)
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    audit = httpx.get(f"{server.base_url}/v1/audit", params={"actor": "hanna@example.com"}, headers=admin, timeout=10)
    events = sorted((e["action"], e["outcome"]) for e in audit.json()["data"])
    assert events == [("POST /auth/logout", "ok"), ("POST /auth/logout", "refused"), ("auth.sign_in", "ok")], audit.text


def test_user_in_no_mapped_group_is_refused(oidc_server: tuple[LiveServer, str], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    server, issuer = oidc_server
    browser.get(f"{issuer}/.well-known/openid-configuration")
    browser.delete_all_cookies()  # the provider forgets the previous user's login
    browser.get(f"{server.base_url}/auth/login")
    _log_in_at_provider(browser, "nogroup-user")
    reason = _until(browser, lambda b: b.find_elements(By.ID, "reason"))[0].text
    assert "nils@example.com" in reason and "in no group" in reason
    assert _fetch(browser, "/v1/me")["status"] == 401
    assert all(c["name"] != "assistant_session" for c in browser.get_cookies())
    # a callback that no sign-in of this browser started is refused (401), and each refusal is in the audit log
    assert httpx.get(f"{server.base_url}/auth/callback?code=x&state=y", timeout=10).status_code == 401
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    audit = httpx.get(f"{server.base_url}/v1/audit", params={"action": "auth.sign_in"}, headers=admin, timeout=10)
    refused = [e for e in audit.json()["data"] if e["outcome"] == "refused"]
    assert [e["status"] for e in refused] == [401, 403], audit.text  # newest first
    assert "nils@example.com" in refused[1]["detail"]["error"] and refused[0]["actor"] == "(identity provider)"
