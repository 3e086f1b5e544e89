"""Core of the assistant platform: settings, domain types, errors, storage, index, retrieval, prompts, models.

The core imports nothing from `ingest`, `training`, `serving` or `cli` (checked by import-linter in CI).
"""

__version__ = "0.1.0"
