"""What leaks between teams (issue 26, point 6): a member's retrieval scores do not move when another team uploads
documents (keyword statistics span every collection, so members get scores that depend on their query and chunks
only), while admins keep the raw keyword scores for debugging. Through the real team server."""

from __future__ import annotations

import httpx

from tests.fixtures.live_server import LiveServer
from tests.fixtures.teams import ADMIN_KEY, HR_KEY, bearer


def _hits(server: LiveServer, key: str, mode: str) -> list[dict[str, object]]:
    body = {"query": "salary bands review", "collections": ["hr"], "mode": mode}
    response = httpx.post(f"{server.base_url}/v1/retrieve", json=body, headers=bearer(key), timeout=60)
    assert response.status_code == 200, response.text
    hits: list[dict[str, object]] = response.json()["data"]
    assert hits
    return hits


def _scores(hits: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return [(h["chunk_id"], h["score"], h["bm25_score"], h["fused_score"], h["dense_score"]) for h in hits]


def test_member_scores_do_not_move_when_another_team_uploads(team_server: LiveServer) -> None:
    before = {mode: _scores(_hits(team_server, HR_KEY, mode)) for mode in ("hybrid", "bm25")}
    admin_before = _hits(team_server, ADMIN_KEY, "bm25")
    assert all(h["bm25_score"] is not None for h in admin_before)  # admins see the raw keyword scores
    text = " ".join(["The eng wiki: salary of contractors, bands of the radio, the review of code."] * 20)
    files = [("files", (f"eng-salary-{i}.txt", f"{text} Note {i}.".encode())) for i in range(3)]
    uploaded = httpx.post(
        f"{team_server.base_url}/v1/documents",
        files=files,
        data={"collection": "eng"},
        headers=bearer(ADMIN_KEY),
        timeout=120,
    )
    assert uploaded.status_code == 200, uploaded.text
    admin_after = _hits(team_server, ADMIN_KEY, "bm25")
    assert [h["bm25_score"] for h in admin_after] != [h["bm25_score"] for h in admin_before]  # the statistics moved
    for mode, scores in before.items():
        assert _scores(_hits(team_server, HR_KEY, mode)) == scores, mode
        assert all(s[2] is None and s[3] is None for s in scores)
