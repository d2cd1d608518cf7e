# `make test` and `make demo` create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA_ROOT ?= $(if $(wildcard ../shared/data/ml-100k/ml-100k.inter),../shared/data,./data)

.PHONY: install test test-fast lint demo demo-clean bench clean

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

# The main job: a small search on ml-100k with the embedded journal storage (no server):
# 2 workers, per-epoch pruning, then the best config exported. Running it again finds the
# budget spent and starts no trial; `make demo-clean` starts over.
DEMO_STORAGE := runs/demo/demo.journal
DEMO_TRIALS ?= 8
DEMO_EPOCHS ?= 6
demo: install
	$(BIN)/spectune study create --study-name demo --dataset ml-100k --data-root $(DATA_ROOT) \
		--storage $(DEMO_STORAGE) --n-trials $(DEMO_TRIALS) --epochs $(DEMO_EPOCHS) \
		--search-space study/demo_space.yaml --pruner median --pruner-startup-trials 2 \
		--sampler-startup-trials 4
	# one thread each: the two workers share this machine's cores
	for i in 1 2; do OMP_NUM_THREADS=1 $(BIN)/spectune worker --study-name demo \
		--storage $(DEMO_STORAGE) -g cpu --no-progress & done; wait
	$(BIN)/spectune study status --study-name demo --storage $(DEMO_STORAGE)
	$(BIN)/spectune export --study-name demo --storage $(DEMO_STORAGE) --top 3 --out runs/demo/best.yaml
	@echo "results: runs/demo/ (best.yaml, study journal); checkpoints: runs/artifacts/demo/"

demo-clean:
	rm -rf runs/demo runs/artifacts/demo

bench: install
	$(BIN)/python benchmarks/train.py

clean:
	rm -rf $(VENV) runs build *.egg-info
