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
	$(BIN)/python -m pip install -q -e ".[dev,encoders]"
	touch $(BIN)/spectune

install: $(BIN)/spectune

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy study datasets storage dashboards

# The main job: a small search on ml-100k with the embedded journal storage (no server):
# 2 workers, per-epoch pruning, the best config exported; then an ablation of that config
# (each DAMPS component off, vanilla MGCN; DEMO_SEEDS seeds each) and both studies' reports.
# Running it again finds the budgets spent and starts no trial; `make demo-clean` starts over.
DEMO_DIR ?= runs/demo
DEMO_STORAGE := $(DEMO_DIR)/demo.journal
DEMO_TRIALS ?= 20
DEMO_EPOCHS ?= 5
DEMO_SEEDS ?= 2
# A fresh machine has no prepared ml-100k: build it first with the MovieLens preset (under a
# minute, a few with posters; the ratings come from the recbole wheel on PyPI). With
# SPECTUNE_POSTERS naming a folder of <MovieID>.jpg posters (and SPECTUNE_MOVIES its movies.dat,
# by default found beside it as in the poster repository) the second modality is image;
# otherwise it is the RecBole knowledge graph.
DEMO_DATA := $(DATA_ROOT)/ml-100k/ml-100k.inter
SPECTUNE_MOVIES ?= $(firstword $(wildcard $(SPECTUNE_POSTERS)/../MovieData/movies.dat $(SPECTUNE_POSTERS)/../movies.dat))
DEMO_BUILD_ARGS := $(if $(SPECTUNE_POSTERS),--posters $(SPECTUNE_POSTERS) $(if $(SPECTUNE_MOVIES),--movies $(SPECTUNE_MOVIES)))
DEMO_WORKER := OMP_NUM_THREADS=1 $(BIN)/spectune worker --storage $(DEMO_STORAGE) -g cpu --no-progress
demo: install $(DEMO_DATA)
	$(BIN)/spectune study create --study-name demo --dataset ml-100k --data-root $(DATA_ROOT) \
		--storage $(DEMO_STORAGE) --n-trials $(DEMO_TRIALS) --epochs $(DEMO_EPOCHS) \
		--search-space study/demo_space.yaml --pruner median --pruner-startup-trials 4 \
		--sampler-startup-trials 6
	# one thread each: the two workers share this machine's cores
	for i in 1 2; do $(DEMO_WORKER) --study-name demo & done; wait
	$(BIN)/spectune study status --study-name demo --storage $(DEMO_STORAGE)
	$(BIN)/spectune export --study-name demo --storage $(DEMO_STORAGE) --top 3 --out $(DEMO_DIR)/best.yaml
	$(BIN)/spectune ablate --study-name demo-ablation --from demo --storage $(DEMO_STORAGE) \
		--seeds $(DEMO_SEEDS) --variants no_apc,no_avrf,no_imcf,vanilla_mgcn
	for i in 1 2; do $(DEMO_WORKER) --study-name demo-ablation & done; wait
	# a demo-sized search: rank importance from 6 COMPLETE trials (the default asks for 10)
	$(BIN)/spectune report --study-name demo --storage $(DEMO_STORAGE) --out $(DEMO_DIR)/report \
		--min-trials 6
	$(BIN)/spectune report --study-name demo-ablation --storage $(DEMO_STORAGE) \
		--out $(DEMO_DIR)/ablation-report
	@echo "results: $(DEMO_DIR)/ (best.yaml, report/index.html, ablation-report/index.html)"
	@echo "checkpoints: runs/artifacts/; watch the studies in the browser with:"
	@echo "  $(BIN)/spectune dashboard --storage $(DEMO_STORAGE)   # http://127.0.0.1:8080/dashboard/"

$(DEMO_DATA): | $(BIN)/spectune
	$(BIN)/spectune data build movielens-100k $(DEMO_BUILD_ARGS) --out $(DATA_ROOT)/ml-100k

demo-clean:
	rm -rf $(DEMO_DIR) runs/artifacts/demo runs/artifacts/demo-ablation

bench: install
	$(BIN)/python benchmarks/train.py

clean:
	rm -rf $(VENV) runs build *.egg-info
