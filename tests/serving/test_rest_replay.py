"""Behaviour unchanged (issue 28): the REST session recorded before the redesign replays to the same JSON now.

`tests/fixtures/rest_session.json` was recorded on 7ce2dd7 (the tree before the redesign's second step) with
`python -m tests.fixtures.rest_session --record tests/fixtures/rest_session.json`. Here the same script runs on a
server of the current code, and every response (status, media type, normalised body) must equal the recorded one;
a difference is shown as a diff per call. Intended changes made since the recording are listed in `ACCEPTED`, each
with its reason, and applied to the recording before comparing. Every API route of the current app must be called
by the script (a new route needs steps in `tests.fixtures.rest_session` and a new recording made after this test
passes, so that the recording still holds every old answer); the console's assets (`/static/...`, one route per
file, which the console's own changes may add or remove) are checked apart: each answers 200 with a body.

Marked slow: the session has a server of its own (the shared ones carry other tests' data); starting it and the 162
calls took 4 min 40 s on the two shared cores (the server's start is most of it). Run it with
`pytest tests/serving/test_rest_replay.py --run-slow`.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from tests.fixtures.rest_session import RECORDING, Session, run_script, start_server

pytestmark = pytest.mark.slow

SHOWN_DIFFS = 12  # calls whose diff the failure message shows in full


def _job_data_names_its_generator(value: Any) -> Any:
    """A job's stored `params.data` (a `JobData`: it has `file_id` and `provenance`) gains `generator: "rules"`."""
    if isinstance(value, list):
        return [_job_data_names_its_generator(item) for item in value]
    if not isinstance(value, dict):
        return value
    found = {key: _job_data_names_its_generator(item) for key, item in value.items()}
    if {"file_id", "provenance", "source"} <= found.keys() and "generator" not in found:
        found["generator"] = "rules"
    return found


# Intended changes since the recording, each with the change that made it: (step prefix, change of the recorded
# response body, why). They are applied to the recorded entries before comparing; every other byte must be equal.
ACCEPTED = [
    (
        "training.jobs.",
        _job_data_names_its_generator,
        "issue 30 (d4a42b7): JobData.generator ('rules' | 'model'), stored in a job's params with its default",
    ),
]


@dataclass(frozen=True)
class Replay:
    entries: list[dict[str, Any]]
    routes: list[APIRoute]
    assets: dict[str, tuple[int, int]]  # asset path -> (status, body length)


@pytest.fixture(scope="module")
def replay(tiny_model_dir: Path, tiny_adapter_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replay]:
    work = tmp_path_factory.mktemp("rest-replay")
    with start_server(work, tiny_model_dir, tiny_adapter_dir) as (server, normaliser):
        entries = run_script(Session(server.base_url, normaliser))
        routes = [route for route in server.app.routes if isinstance(route, APIRoute)]
        assets = {}
        for route in routes:
            if route.path.startswith("/static/"):
                response = httpx.get(f"{server.base_url}{route.path}", timeout=60)
                assets[route.path] = (response.status_code, len(response.content))
    yield Replay(json.loads(json.dumps(entries)), routes, assets)  # as the recording reads back: tuples are lists


def _accepted(entry: dict[str, Any]) -> dict[str, Any]:
    """The recorded entry with the intended changes (`ACCEPTED`) that concern its step applied."""
    for prefix, change, _why in ACCEPTED:
        if entry["step"].startswith(prefix):
            entry = {**entry, "body": change(entry["body"])}
    return entry


def _shown(entry: dict[str, Any]) -> list[str]:
    return json.dumps(entry, indent=1, ensure_ascii=False, sort_keys=True).splitlines()


def _diff(step: str, expected: dict[str, Any] | None, actual: dict[str, Any] | None) -> str:
    if expected is None:
        return f"{step}: not in the recording (a new step: re-record once the rest passes)"
    if actual is None:
        return f"{step}: recorded, but the script no longer calls it"
    lines = difflib.unified_diff(_shown(expected), _shown(actual), "recorded", "now", lineterm="", n=2)
    request = expected["request"]
    return f"{step} ({request['method']} {request['path']}, key {request['key']}):\n" + "\n".join(lines)


def test_every_response_matches_the_recording(replay: Replay) -> None:
    recorded = [_accepted(entry) for entry in json.loads(RECORDING.read_text(encoding="utf-8"))]
    steps = [entry["step"] for entry in replay.entries]
    assert len(steps) == len(set(steps)), "step names must be unique"
    expected = {entry["step"]: entry for entry in recorded}
    actual = {entry["step"]: entry for entry in replay.entries}
    order = [entry["step"] for entry in recorded] + [step for step in steps if step not in expected]
    differing = [step for step in order if expected.get(step) != actual.get(step)]
    shown = "\n\n".join(_diff(step, expected.get(step), actual.get(step)) for step in differing[:SHOWN_DIFFS])
    assert not differing, f"{len(differing)} of {len(order)} calls differ from the recording: {differing}\n\n{shown}"


def _route_of(method: str, path: str, routes: list[APIRoute]) -> APIRoute | None:
    """The route that serves `method path`: the first whose path and method match, as Starlette picks it."""
    bare = path.split("?")[0]
    return next((r for r in routes if method in r.methods and r.path_regex.match(bare)), None)


def test_the_session_calls_every_api_route(replay: Replay) -> None:
    called: set[tuple[str, str]] = set()
    for entry in replay.entries:
        request = entry["request"]
        route = _route_of(request["method"], request["path"], replay.routes)
        if route is not None:
            called.add((request["method"], route.path))
    api = {(method, r.path) for r in replay.routes if not r.path.startswith("/static/") for method in r.methods}
    missing = sorted(api - called)
    assert not missing, f"routes the recorded session does not call (add steps, then re-record): {missing}"
    assert len(api) >= 40  # the check saw the app's routes (43 at 7ce2dd7), not an empty list


def test_every_console_asset_is_served(replay: Replay) -> None:
    assert replay.assets, "the console's assets are routes of the app"
    failing = {path: found for path, found in replay.assets.items() if found[0] != 200 or found[1] == 0}
    assert not failing, f"assets not served (status, bytes): {failing}"
