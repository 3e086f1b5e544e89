"""Document ingest: load -> clean -> select (dedup) -> chunk -> embed -> SQLite rows + FAISS vectors.

Contract: `ingest.ingest_service.IngestService` is the entry point (the CLI and the REST layer call the same methods), a
facade over `ingest.preparing` (files -> deduplicated chunks, no writes) and `ingest.store` (the crash-safe writes,
recovery, rebuild and check); the other modules are their stages and import only the `assistant` core.
"""
