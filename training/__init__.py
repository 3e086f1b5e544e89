"""LoRA training of the assistant's adapters: SFT, DPO and PSFT on TRL + PEFT, with evaluation and a registry.

Contract: `training` imports only the core `assistant` package (never `ingest`, `serving` or `cli`). The public entry
point for a job worker is `training.runs.run_training(settings, request)`, which validates the data and the base
adapter before any training step, trains into a run directory, evaluates, and registers a versioned adapter
atomically through `training.registry.AdapterRegistry`. Importing this package is cheap: heavy libraries (torch,
transformers, trl, peft) are imported inside the modules that need them.
"""
