# Every target bootstraps .venv itself, so a fresh clone needs only Python >= 3.11 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench chaos clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict swarmd tests

# Includes the short chaos campaign (tests/chaos); loadgroup keeps each xdist_group on one worker.
test: lint
	$(BIN)/python -m pytest -n 2 --dist loadgroup tests

demo: $(STAMP)
	$(BIN)/python examples/demo.py

# Numbers, not tests: see README "Performance". peers.py needs Sidekiq (apt-get install ruby-sidekiq).
bench: $(STAMP)
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/throughput.py --processes 2
	$(BIN)/python benchmarks/latency.py
	$(BIN)/python benchmarks/swarm.py --skip-throughput
	if command -v sidekiq >/dev/null; then $(BIN)/python benchmarks/peers.py; \
	else echo "peers.py skipped: no Sidekiq (apt-get install ruby-sidekiq)"; fi

# The whole fault-injection campaign (6-9 min on 2 cores) and its table: see README "What we test, and what it found".
chaos: $(STAMP)
	$(BIN)/python benchmarks/chaos.py

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
