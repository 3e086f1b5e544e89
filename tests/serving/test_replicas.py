"""Scale-out on one PostgreSQL: two real server processes (`assistant serve`, each with its own data directory) share
the database and the adapters path. What one replica is told, the other serves within a few seconds.

Job claiming by two worker processes on the same kind of database is `tests/training/test_worker_claims.py`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from assistant.storage import Database
from tests.fixtures.postgres import PostgresServer
from tests.fixtures.replicas import Replica, start_replicas, wait_for
from training.registry import AdapterRegistry

pytestmark = pytest.mark.postgres

CATCH_UP_S = 10.0  # sync interval 0.5 s; generous for a shared 2-core machine
DOC = (
    "The lighthouse keeper of Skerry Point logs the passing ships in a green ledger every evening at dusk. "
    "Her ledger notes the weather, the swell, and the names of the trawlers heading for the northern banks. "
) * 4
QUERY = "Who records the ships passing the lighthouse in a green ledger?"


@pytest.fixture(scope="module")
def replicas(
    postgres_server: PostgresServer, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Replica, Replica, str, Path]]:
    url = postgres_server.create_database("replicas")
    root = tmp_path_factory.mktemp("replicas")
    a, b = start_replicas(root, url, tiny_model_dir)
    try:
        yield a, b, url, root
    finally:
        a.stop()
        b.stop()


def test_an_upload_and_a_deletion_through_one_replica_reach_the_other(
    replicas: tuple[Replica, Replica, str, Path],
) -> None:
    a, b, _url, _root = replicas
    before = b.replica_status()["vectors"]
    uploaded = a.post("/v1/documents", files=[("files", ("lighthouse.txt", DOC.encode()))])
    assert uploaded.status_code == 200, uploaded.text
    result = uploaded.json()["data"][0]
    document_id, chunks = result["document_id"], result["chunks"]
    assert result["status"] == "ingested" and chunks > 0

    # Dense retrieval on B needs B's own FAISS index to hold the new vectors (keyword search reads the database).
    wait_for(lambda: document_id in b.dense_document_ids(QUERY), timeout=CATCH_UP_S)
    assert b.replica_status()["vectors"] == before + chunks
    assert b.dense_document_ids(QUERY)[0] == a.dense_document_ids(QUERY)[0] == document_id

    deleted = httpx.delete(f"{a.base_url}/v1/documents/{document_id}", timeout=60)
    assert deleted.status_code == 200, deleted.text
    wait_for(lambda: b.replica_status()["vectors"] == before, timeout=CATCH_UP_S)
    assert document_id not in b.dense_document_ids(QUERY)


def test_an_activation_through_one_replica_is_served_by_the_other(
    replicas: tuple[Replica, Replica, str, Path], tiny_adapter_dir: Path
) -> None:
    a, b, url, root = replicas
    db = Database(url)
    record = AdapterRegistry(db, root / "shared-adapters").register(
        "fleet", tiny_adapter_dir, base_model="tiny", method="sft", lineage={}, metrics={}
    )
    db.dispose()
    activated = a.post("/v1/adapters/fleet/activate", json={"version": record.version})
    assert activated.status_code == 200, activated.text

    # B loads the newly active version by its path on the shared adapters path, without being told.
    wait_for(lambda: f"fleet@v{record.version}" in b.replica_status()["adapters"], timeout=CATCH_UP_S)
    assert b.get("/v1/adapters")["active"] == {"fleet": f"fleet@v{record.version}"}
    on_a, on_b, base_on_b = (chat(r, model) for r, model in ((a, "fleet"), (b, "fleet"), (b, "tiny")))
    assert on_a == on_b != base_on_b  # greedy: the same adapter gives the same text on both; it changes the output


def chat(replica: Replica, model: str) -> str:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Say something about ships."}],
        "max_tokens": 12,
        "temperature": 0,
        "use_retrieval": False,
    }
    response = replica.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    content: str = response.json()["choices"][0]["message"]["content"]
    return content
