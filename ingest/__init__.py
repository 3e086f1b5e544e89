"""Document ingest: load -> clean -> select (dedup) -> chunk -> embed -> SQLite rows + FAISS vectors.

Contract: `ingest.service.IngestService` is the entry point (the CLI and the REST layer call the same methods);
the other modules are its stages and import only the `assistant` core.
"""
