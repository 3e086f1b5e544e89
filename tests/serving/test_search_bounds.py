"""Searches do not wait for each other, and a query's cost is bounded (issue 26, points 7 and 8).

Through the real team server: a search holding the index lock (as a slow search does for its whole run) does not
delay another caller's `/v1/retrieve` (before, the whole search ran under one exclusive lock); a query of thousands
of distinct words costs about what a short one does (its keyword terms are capped); `collections` is bounded and
de-duplicated.
"""

from __future__ import annotations

import statistics
import threading
import time

import httpx

from assistant.retrieval.keyword import MAX_QUERY_TERMS, query_tokens
from tests.fixtures.live_server import LiveServer
from tests.fixtures.teams import ADMIN_KEY, bearer

QUERY = {"query": "salary bands and the canteen", "collections": ["hr", "eng"]}


def _retrieve(server: LiveServer, body: dict[str, object]) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = httpx.post(f"{server.base_url}/v1/retrieve", json=body, headers=bearer(ADMIN_KEY), timeout=120)
    return time.perf_counter() - started, response


def _median_time(server: LiveServer, body: dict[str, object], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        seconds, response = _retrieve(server, body)
        assert response.status_code == 200, response.text
        times.append(seconds)
    return statistics.median(times)


def test_a_search_does_not_wait_for_another_search(team_server: LiveServer) -> None:
    alone = _median_time(team_server, QUERY)
    lock = team_server.state.index_lock
    holding, release = threading.Event(), threading.Event()

    def slow_search() -> None:  # holds the lock the way a search does, for far longer than any search takes
        with lock.read():
            holding.set()
            release.wait(30)

    thread = threading.Thread(target=slow_search, daemon=True)
    thread.start()
    try:
        assert holding.wait(5)
        beside = _median_time(team_server, QUERY)
    finally:
        release.set()
        thread.join(10)
    assert beside <= max(2 * alone, alone + 0.25), (alone, beside)


def test_a_query_of_thousands_of_words_is_bounded(team_server: LiveServer) -> None:
    words = " ".join(f"w{i:05d}" for i in range(1100))  # ~7700 characters of distinct words, the request's limit
    assert len(query_tokens(words)) == MAX_QUERY_TERMS
    short = _median_time(team_server, QUERY, runs=3)
    huge = _median_time(team_server, {"query": words, "collections": ["hr"]}, runs=3)
    assert huge <= max(3 * short, short + 0.5), (short, huge)


def test_collections_are_bounded_and_deduplicated(team_server: LiveServer) -> None:
    _, many = _retrieve(team_server, {"query": "salary", "collections": [f"c{i}" for i in range(101)]})
    assert many.status_code == 400 and "collections" in many.text
    _, repeated = _retrieve(team_server, {"query": "salary", "collections": ["hr"] * 100})
    assert repeated.status_code == 200, repeated.text
    assert {hit["collection"] for hit in repeated.json()["data"]} == {"hr"}
    chat = {"model": "tiny", "messages": [{"role": "user", "content": "salary?"}], "max_tokens": 2}
    refused = httpx.post(
        f"{team_server.base_url}/v1/chat/completions",
        json={**chat, "collections": ["hr"] * 101},
        headers=bearer(ADMIN_KEY),
        timeout=120,
    )
    assert refused.status_code == 400 and "collections" in refused.text
