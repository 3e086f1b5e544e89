"""Browser fixtures: the real server (vLLM on the tiny model, SQLite, FAISS, a job worker) with an admin key and a
member key scoped to one collection, and headless Debian Chromium driven by selenium through the Debian
chromedriver (nothing is downloaded: the binaries are named explicitly and selenium manager is switched off).

Screenshots go to `$SCREENSHOT_DIR` (default `build/screenshots/`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.live_server import LiveServer
from tests.serving.conftest import tiny_settings

CHROMIUM = Path(os.environ.get("CHROMIUM_BINARY", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
ADMIN_KEY = "admin-key-0123456789abcdef"
MEMBER_KEY = "member-key-0123456789abcdef"
MEMBER_COLLECTION = "handbook"
OTHER_COLLECTION = "finance"
ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if not missing:
        return
    reason = f"browser tests need {', '.join(missing)} (apt-get install chromium chromium-driver; pip install selenium)"
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    folder = Path(os.environ.get("SCREENSHOT_DIR", ROOT / "build" / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")  # one server for every browser module (each start costs a minute or two)
def console_server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    from serving.app import create_app
    from serving.services.job_service import WorkerSupervisor

    keys = [
        {"key": ADMIN_KEY, "name": "ada", "role": "admin"},
        {"key": MEMBER_KEY, "name": "max", "role": "member", "collections": [MEMBER_COLLECTION]},
    ]
    settings = tiny_settings(
        tmp_path_factory.mktemp("console-data"),
        tiny_model_dir,
        server={"api_keys": keys, "max_upload_mb": 3, "sync_upload_mb": 0.05, "default_max_tokens": 24},
    )
    server = LiveServer(create_app(settings)).start()
    # the job worker starts once the engine is up (both starting at once on a small machine slows both down)
    worker = WorkerSupervisor(settings)
    worker.start()
    yield server
    worker.stop()
    server.stop()


def call(server: LiveServer, method: str, path: str, key: str = ADMIN_KEY, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.request(method, f"{server.base_url}{path}", headers=headers, timeout=120, **kwargs)


def import_pairs(server: LiveServer, pairs: list[dict[str, str]]) -> dict[str, Any]:
    body = "\n".join(json.dumps(p) for p in pairs).encode()
    response = call(server, "POST", "/v1/preferences", files={"file": ("pairs.jsonl", body)})
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    os.environ["SE_OFFLINE"] = "true"  # selenium manager must never fetch a driver or a browser
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    flags = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900")
    for flag in flags:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console log: CSP refusals are logged there
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()
