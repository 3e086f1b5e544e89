"""The web console's server side: the page and its assets are served without a key (they hold no data), with the
types a browser needs for ES modules, and the job form's defaults come from the training config."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from assistant.settings import Settings


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    from serving.app import create_app

    keys = [{"key": "admin-key-0123456789abcdef", "name": "ada", "role": "admin"}]
    settings = Settings(data_dir=tmp_path_factory.mktemp("web"), server={"api_keys": keys})
    # no lifespan (no `with`): the console's routes need neither the engine nor the database
    return TestClient(create_app(settings), base_url="http://127.0.0.1")


def test_page_and_assets_are_served_without_a_key(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/static/js/app.js">' in page.text
    static = Path(__file__).resolve().parents[2] / "serving" / "web" / "static"
    for path in [*sorted(static.rglob("*.js")), static / "app.css"]:
        response = client.get(f"/static/{path.relative_to(static).as_posix()}")
        assert response.status_code == 200, path
        assert response.content == path.read_bytes()
        expected = "javascript" if path.suffix == ".js" else "text/css"
        assert expected in response.headers["content-type"]
    assert client.get("/static/../../app.py").status_code == 404


def test_training_defaults_are_the_training_configs(client: TestClient) -> None:
    from training.config import PROJECT_DEFAULTS

    defaults = client.get("/web/training-defaults").json()
    assert {"sft", "dpo", "psft"} <= set(defaults)
    for method in ("sft", "dpo", "psft"):
        assert defaults[method]["learning_rate"] == PROJECT_DEFAULTS["learning_rate"]
        assert defaults[method]["per_device_train_batch_size"] == PROJECT_DEFAULTS["per_device_train_batch_size"]
        assert defaults[method]["lora_r"] == 16
    assert "beta" in defaults["dpo"] and "beta" not in defaults["sft"]
