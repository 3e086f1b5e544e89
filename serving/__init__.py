"""The HTTP server: FastAPI app factory, routes, services, generation engines and job launching.

Imports the core, `ingest` and `training`; nothing imports `serving` but the CLI.
"""
