# The two set-up commands of the README: `make serve` and `make test`. Everything installs into .venv.
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install install-dev serve test lint ci

install:
	bash scripts/install.sh

install-dev:
	bash scripts/install.sh --dev

# Install, then start the server on the embedded default (SQLite + FAISS + SmolLM2 under ./data).
serve: install
	VLLM_CPU_KVCACHE_SPACE=$${VLLM_CPU_KVCACHE_SPACE:-1} $(BIN)/assistant serve

# Install with the dev extra, then run the default test suite (slow and gpu tests are skipped; exit 5 = no tests).
test: install-dev
	$(BIN)/pytest $(PYTEST_ARGS) || [ $$? -eq 5 ]

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict assistant
	$(BIN)/mypy assistant ingest training serving cli
	$(BIN)/lint-imports

ci: lint test
