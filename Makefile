# `make test` and `make demo` create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA_ROOT ?= $(if $(wildcard ../shared/data/ml-100k/ml-100k.inter),../shared/data,./data)

.PHONY: install test test-fast lint demo bench clean

$(BIN)/spectune: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first: this pinned CPU build is on disk here; an unpinned torch pulls CUDA wheels.
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(BIN)/spectune

install: $(BIN)/spectune

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy study datasets storage dashboards

demo: install
	$(BIN)/spectune train -m MGCN -d ml-100k --data-root $(DATA_ROOT) --out runs/demo/result.json

bench: install
	$(BIN)/python benchmarks/train.py

clean:
	rm -rf $(VENV) runs build *.egg-info
